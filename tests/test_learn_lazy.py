"""Learning from a dataset read lazily, on a real ``dask.distributed`` cluster: preferences,
rankings and demonstrations give the artifact learned from the in-memory concatenation of the
shards (labelled rewards: ``test_rewards_lazy.py``)."""

from __future__ import annotations

import dask
import pytest
from support import concatenation, labelled, write_shards

from symreward.data import load_dataset
from symreward.learner import SymbolicRewardLearner

FEATURES = {"a": "obs[0]", "b": "obs[1]", "u": "act[0]"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learn") / "shards"
    write_shards(labelled(seed=4, episodes=16, length=30), folder, [120, 240, 390])
    return folder


@pytest.mark.parametrize("objective", ["preferences", "rankings", "demonstrations"])
def test_learning_on_a_cluster_equals_learning_in_memory(shards, objective, dask_client):
    def learned(data):
        return SymbolicRewardLearner(objective, seed=0, max_terms=3).fit(data, FEATURES)

    lazy = load_dataset(shards, lazy=True)
    with dask.config.set(scheduler=dask_client):
        on_cluster = learned(lazy)
    in_memory = learned(concatenation(shards))
    got, expected = on_cluster.artifact_, in_memory.artifact_
    assert [(t.name, t.expr) for t in got.terms] == [(t.name, t.expr) for t in expected.terms]
    assert on_cluster.coefficients_ == pytest.approx(in_memory.coefficients_, rel=1e-9, abs=0)
    assert got.provenance["data"] == expected.provenance["data"] | {"source": str(shards)}
    assert got.provenance["data"]["transitions"] == lazy.n


def test_the_learn_command_on_a_cluster(shards, tmp_path, dask_client):
    from support import run_cli

    from symreward.artifact import RewardArtifact

    features = tmp_path / "features.toml"
    features.write_text("[features]\n" + "".join(f'{k} = "{v}"\n' for k, v in FEATURES.items()))
    out = tmp_path / "learned.toml"
    done = run_cli("learn", shards, "--features", features, "--max-terms", "3", "--scheduler",
                   dask_client.scheduler.address, "-o", out)
    assert done.returncode == 0, done.stderr
    expected = SymbolicRewardLearner(seed=0, max_terms=3).fit(concatenation(shards), FEATURES)
    assert [(t.name, t.expr) for t in RewardArtifact.load(out).terms] == [
        (t.name, t.expr) for t in expected.artifact_.terms]
