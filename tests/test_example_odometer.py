"""The flywheel on examples/odometer: learn -> audit finds the spoofed odometer -> a person
accepts the finding -> harden -> the re-audit finds no exploit; the reward is no further from
the truth on held-out data."""

import importlib.util
import json
import os
from pathlib import Path

import tomlkit

from symreward.artifact import RewardArtifact
from symreward.audit import epic_distance
from symreward.cli import main
from symreward.data import load_dataset, save_dataset
from symreward.findings import FAR, read_findings

EXAMPLE = Path(__file__).parent.parent / "examples" / "odometer"
# Seeds of the training and the held-out data; SYMREWARD_ODOMETER_SEED checks another.
SEED = int(os.environ.get("SYMREWARD_ODOMETER_SEED", "0"))
HELD_OUT_SEED = SEED + 1000


def _make_data():
    spec = importlib.util.spec_from_file_location("odometer_make_data", EXAMPLE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _audit(tmp_path, artifact, name, capsys):
    findings = tmp_path / f"{name}-findings.toml"
    assert main(["audit", str(artifact), str(tmp_path / "train.npz"), "--exploit-time", "5",
                 "--json", "--findings", str(findings)]) == 0
    report = json.loads(capsys.readouterr().out)
    return report["exploits"]["maximum"], findings


def _truth(obs, act, next_obs, infos=None):
    position = next_obs[:, 0]
    return position - 0.1 * position**2


def test_the_flywheel_removes_the_spoofed_odometer(tmp_path, capsys):
    make_data = _make_data()
    save_dataset(make_data.make(SEED), tmp_path / "train.npz")
    save_dataset(make_data.make(HELD_OUT_SEED), tmp_path / "held_out.npz")
    learned, hardened = tmp_path / "reward.toml", tmp_path / "hardened.toml"
    assert main(["learn", str(tmp_path / "train.npz"), "--features",
                 str(EXAMPLE / "features.toml"), "-o", str(learned)]) == 0
    capsys.readouterr()

    # The learned reward pays for the readout: its maximum is where the readout is high and
    # the rover is not, far from every recorded state and above the data's best.
    maximum, findings_file = _audit(tmp_path, learned, "first", capsys)
    assert maximum["distance_to_data"] > 2 * FAR
    assert maximum["above_data_best"] > 1.0
    assert maximum["state"]["readout"] - maximum["state"]["position"] > 5.0
    [finding] = read_findings(findings_file, RewardArtifact.load(learned)).findings
    assert finding.want == "below" and not finding.accept
    assert finding.state == maximum["state"]

    # A person reads the finding and accepts it, by editing the file.
    document = tomlkit.parse(findings_file.read_text())
    document["findings"][0]["accept"] = True
    findings_file.write_text(tomlkit.dumps(document))
    assert main(["harden", str(learned), str(tmp_path / "train.npz"), "--findings",
                 str(findings_file), "-o", str(hardened)]) == 0
    capsys.readouterr()

    # The re-audit's maximum is no exploit: no finding, and nothing far above the data's best.
    again, again_file = _audit(tmp_path, hardened, "second", capsys)
    assert read_findings(again_file, RewardArtifact.load(hardened)).findings == []
    assert again["distance_to_data"] < FAR or again["above_data_best"] <= 0.0

    # On held-out data the hardened reward is no further from the truth (EPIC) than by 0.02.
    held_out = load_dataset(tmp_path / "held_out.npz")
    before, after = (epic_distance(RewardArtifact.load(path).reward_fn(), _truth, held_out)
                     for path in (learned, hardened))
    with capsys.disabled():  # the figures for benchmarks/RESULTS.md, shown with -s
        print(f"\nEPIC to the truth on held-out data: before {before:.4f}, after {after:.4f}; "
              f"first maximum {maximum}; re-audit maximum {again}; learned "
              f"{RewardArtifact.load(learned).formula_text()}; hardened "
              f"{RewardArtifact.load(hardened).formula_text()}")
    assert after <= before + 0.02

    # The lineage records the harden, from the learned reward, with the accepted finding.
    hardened_artifact = RewardArtifact.load(hardened)
    assert hardened_artifact.provenance["harden"]["from"] == \
        RewardArtifact.load(learned).content_hash()
    assert hardened_artifact.provenance["harden"]["findings_accepted"] == [finding.id]
    assert main(["log", str(hardened)]) == 0
    assert "harden" in capsys.readouterr().out
