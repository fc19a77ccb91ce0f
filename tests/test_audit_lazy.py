"""``audit`` of a dataset read lazily: it runs on whole chunks drawn with the seed, equals the
audit of that sample read in memory, and its data section describes the whole dataset."""

from __future__ import annotations

import json

from support import concatenation, labelled, write_shards

from symreward.artifact import RewardArtifact
from symreward.audit.report import render_text
from symreward.audit.run import audit
from symreward.cli import main
from symreward.data import load_dataset
from symreward.data.dataset import dataset_digest

REWARD = """\
schema = "symreward/1"
name = "audited"

[features]
x = "obs[0]"
u = "act[0]"

[[terms]]
name = "main"
expr = "-x**2 + 0.3*u"
"""


def shards(tmp_path):
    data = labelled(seed=3, episodes=12, length=20)
    folder = tmp_path / "shards"
    write_shards(data, folder, [60, 120, 180])
    return folder


def test_audit_of_a_lazy_dataset_is_the_audit_of_its_sample(tmp_path, monkeypatch):
    folder = shards(tmp_path)
    monkeypatch.setattr("symreward.audit.run.SAMPLE_ROWS", 150)
    artifact = RewardArtifact.loads(REWARD)
    lazy = load_dataset(folder, lazy=True)
    sample, drawn = lazy.sample(150, seed=5)
    report = audit(artifact, lazy, seed=5, exploit_time=0)
    in_memory = audit(artifact, sample, seed=5, exploit_time=0)
    whole = concatenation(folder)
    data = report["data"]
    assert data["sample"] == drawn and drawn["rows"] < whole.n
    assert data["transitions"] == whole.n and data["episodes"] == whole.n_episodes
    assert data["preference_pairs"] == len(whole.preferences)
    assert data["expert_transitions"] == int(whole.expert.sum())
    assert data["sha256"] == dataset_digest(whole)
    assert data["reward"] == in_memory["data"]["reward"]
    for section in ("attribution", "partial_dependence", "calibration"):
        assert json.dumps(report.get(section), sort_keys=True) == json.dumps(
            in_memory.get(section), sort_keys=True)
    assert f"audited on a sample: {drawn['rows']} of {whole.n} transitions" in render_text(
        report)


def test_the_audit_command_on_a_folder_of_shards(tmp_path, capsys, monkeypatch):
    folder = shards(tmp_path)
    reward = tmp_path / "reward.toml"
    reward.write_text(REWARD)
    monkeypatch.setattr("symreward.audit.run.SAMPLE_ROWS", 150)
    assert main(["audit", str(reward), str(folder), "--scheduler", "threads", "--exploit-time", "0",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"]["sample"]["of_rows"] == concatenation(folder).n
    assert report["data"]["sample"]["rows"] <= 150
