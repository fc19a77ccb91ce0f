"""The flywheel on examples/odometer: learn -> audit finds the spoofed odometer -> a person
accepts the finding -> harden -> the re-audit finds no exploit; the reward is no further from
the truth on held-out data."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import tomlkit

from symreward.artifact import RewardArtifact
from symreward.audit import epic_distance
from symreward.cli import main
from symreward.data import load_dataset, save_dataset
from symreward.findings import FAR, read_findings

EXAMPLE = Path(__file__).parent.parent / "examples" / "odometer"
# Seeds of the training data, tried in turn until the learned reward pays for the readout: on
# these three it did on every one here (on seed 3 the first fit reads the position, and there
# is nothing to find), so another processor's path through a fit has two spares.
# SYMREWARD_ODOMETER_SEED checks one seed. The held-out data's seed is the seed + 1000.
SEEDS = ([int(os.environ["SYMREWARD_ODOMETER_SEED"])] if "SYMREWARD_ODOMETER_SEED" in os.environ
         else [0, 1, 2])


def _make_data():
    spec = importlib.util.spec_from_file_location("odometer_make_data", EXAMPLE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _audit(folder, artifact, name, capsys):
    findings = folder / f"{name}-findings.toml"
    assert main(["audit", str(artifact), str(folder / "train.npz"), "--exploit-time", "5",
                 "--json", "--findings", str(findings)]) == 0
    report = json.loads(capsys.readouterr().out)
    return report["exploits"]["maximum"], findings


def _truth(obs, act, next_obs, infos=None):
    position = next_obs[:, 0]
    return position - 0.1 * position**2


def _spoofable(tmp_path, capsys):
    """The first seed of ``SEEDS`` whose learned reward pays for the readout: its maximum is
    where the readout is high and the rover is not, far from every recorded state and above
    the data's best. Returns the seed, its folder, the learned artifact's path, that maximum
    and the audit's findings file."""
    make_data = _make_data()
    for seed in SEEDS:
        folder = tmp_path / f"seed-{seed}"
        folder.mkdir()
        save_dataset(make_data.make(seed), folder / "train.npz")
        learned = folder / "reward.toml"
        assert main(["learn", str(folder / "train.npz"), "--features",
                     str(EXAMPLE / "features.toml"), "-o", str(learned)]) == 0
        capsys.readouterr()
        maximum, findings_file = _audit(folder, learned, "first", capsys)
        if maximum["distance_to_data"] > 2 * FAR and maximum["above_data_best"] > 1.0:
            return seed, folder, learned, maximum, findings_file
    pytest.fail(f"on none of the data seeds {SEEDS} does the learned reward pay for the "
                "readout far from the data")


def test_the_flywheel_removes_the_spoofed_odometer(tmp_path, capsys):
    seed, folder, learned, maximum, findings_file = _spoofable(tmp_path, capsys)
    hardened = folder / "hardened.toml"
    save_dataset(_make_data().make(seed + 1000), folder / "held_out.npz")
    assert maximum["state"]["readout"] - maximum["state"]["position"] > 5.0
    [finding] = read_findings(findings_file, RewardArtifact.load(learned)).findings
    assert finding.want == "below" and not finding.accept
    assert finding.state == maximum["state"]

    # A person reads the finding and accepts it, by editing the file.
    document = tomlkit.parse(findings_file.read_text())
    document["findings"][0]["accept"] = True
    findings_file.write_text(tomlkit.dumps(document))
    assert main(["harden", str(learned), str(folder / "train.npz"), "--findings",
                 str(findings_file), "-o", str(hardened)]) == 0
    capsys.readouterr()

    # The re-audit's maximum is no exploit: no finding, and nothing far above the data's best.
    again, again_file = _audit(folder, hardened, "second", capsys)
    assert read_findings(again_file, RewardArtifact.load(hardened)).findings == []
    assert again["distance_to_data"] < FAR or again["above_data_best"] <= 0.0

    # On held-out data the hardened reward is no further from the truth (EPIC) than by 0.02.
    held_out = load_dataset(folder / "held_out.npz")
    before, after = (epic_distance(RewardArtifact.load(path).batch_reward(), _truth, held_out)
                     for path in (learned, hardened))
    with capsys.disabled():  # the figures for benchmarks/RESULTS.md, shown with -s
        print(f"\nseed {seed}: EPIC to the truth on held-out data: before {before:.4f}, "
              f"after {after:.4f}; "
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
