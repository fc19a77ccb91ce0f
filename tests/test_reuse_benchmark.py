"""The pure pieces of benchmarks/reuse.py (normalisation, aggregation, targets), the peer's
net evaluated in numpy, and the neural reward's wrapper.

The benchmark needs the ``bench`` extra (stable-baselines3, torch), which CI does not install:
without stable-baselines3 this file skips.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("stable_baselines3", reason="the reuse benchmark needs symreward[bench]")
torch = pytest.importorskip("torch")
gymnasium = pytest.importorskip("gymnasium")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reuse  # noqa: E402
from peer_imitation import RewardMLP  # noqa: E402

finite = st.floats(-1e4, 1e4, allow_nan=False)


@given(finite, st.floats(1e-3, 1e4), st.lists(finite, max_size=5))
def test_normalised_puts_random_at_zero_and_reference_at_one(random, gain, others):
    reference = random + gain
    values = reuse.normalised([random, reference, *others], random, reference)
    assert values[0] == 0.0
    assert values[1] == pytest.approx(1.0, rel=1e-12)
    # affine and increasing: the order of the returns is kept
    assert np.all(np.diff(values[np.argsort(others) + 2]) >= 0) if others else True


@pytest.mark.parametrize("reference", [-50.0, -60.0])
def test_normalised_refuses_a_reference_no_better_than_random(reference):
    with pytest.raises(ValueError, match="does not beat the random"):
        reuse.normalised([-40.0], -50.0, reference)


def test_mean_std_is_the_sample_std_and_nan_for_one_value():
    assert reuse.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, std = reuse.mean_std([4.0])
    assert mean == 4.0 and math.isnan(std)
    assert all(math.isnan(x) for x in reuse.mean_std([]))


def _run(reward: str, seed: int, mean_return: float, share: float | None = None,
         algo: str = "sac") -> dict:
    return {"task": "pendulum", "algo": algo, "reward": reward, "seed": seed,
            "mean_return": mean_return, "learn_seconds": 10.0 + seed,
            "reward_share": share, "reward_us_per_step": None if share is None else 2.0}


def test_summarise_normalises_by_the_true_reward_mean_of_the_same_learner():
    runs = [_run("true", 0, -200.0), _run("true", 1, -100.0), _run("true", 2, -150.0),
            _run("symbolic", 0, -150.0, 0.01), _run("symbolic", 1, -600.0, 0.03),
            _run("neural", 0, -1000.0, 0.05),
            {**_run("neural", 1, 0.0), "error": {"type": "RuntimeError"}},
            _run("true", 0, -500.0, algo="ppo"), _run("symbolic", 0, -500.0, 0.02, algo="ppo")]
    rows = {(r["algo"], r["reward"]): r
            for r in reuse.summarise(runs, {"pendulum": -1100.0}, {"pendulum": -625.0})}
    # the reference is the mean of the true-reward runs of the same learner: -150, span 950
    true = rows["sac", "true"]
    assert true["reference_return"] == -150.0
    assert true["normalised_mean_std"][0] == pytest.approx(1.0, abs=1e-12)
    assert true["normalised"] == pytest.approx([900 / 950, 1000 / 950, 950 / 950])
    symbolic = rows["sac", "symbolic"]
    assert symbolic["normalised"] == pytest.approx([950 / 950, 500 / 950])
    assert symbolic["reward_share_mean"] == pytest.approx(0.02)
    neural = rows["sac", "neural"]
    assert neural["failed"] == 1 and neural["seeds"] == [0]
    assert neural["normalised"] == pytest.approx([100 / 950])
    assert true["reward_share_mean"] is None        # computed inside the env's step
    assert true["zero_action_normalised"] == pytest.approx(475 / 950)
    # PPO's scale is its own: one true run, so its symbolic run at the same return is 1
    assert rows["ppo", "symbolic"]["normalised"] == pytest.approx([1.0])
    lines = reuse.target_lines(list(rows.values()))
    assert lines == [
        "- pendulum ppo: symbolic 1.0000 (>= 0.9: yes), no neural figure: MISSED",
        "- pendulum sac: symbolic 0.7632 ± 0.3349 (>= 0.9: no), neural 0.1053, symbolic - "
        "neural +0.6579 (>= 0: yes): MISSED"]
    tie = [{**rows["sac", "true"], "reward": "symbolic", "normalised_mean_std": (0.9996, 0.001)},
           {**rows["sac", "true"], "reward": "neural", "normalised_mean_std": (1.0004, 0.0003)}]
    assert reuse.target_lines(tie) == [
        "- pendulum sac: symbolic 0.9996 ± 0.0010 (>= 0.9: yes), neural 1.0004 ± 0.0003, "
        "symbolic - neural -0.0008 (>= 0: no): MISSED"]


def test_summarise_without_a_finished_true_run_has_no_normalised_figures():
    runs = [{**_run("true", 0, 0.0), "error": {"type": "RuntimeError"}},
            _run("symbolic", 0, -150.0, 0.01)]
    rows = {r["reward"]: r for r in reuse.summarise(runs, {"pendulum": -1100.0})}
    assert rows["true"]["failed"] == 1
    assert all(math.isnan(x) for x in rows["symbolic"]["normalised"])


def _torch_net(sizes: list[int], seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for k, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if k < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def test_reward_mlp_is_the_torch_net_in_float32(tmp_path):
    net = _torch_net([3 + 1 + 3, 32, 32, 1], seed=0)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    mlp = RewardMLP(tuple(m.weight.detach().numpy().copy() for m in linear),
                    tuple(m.bias.detach().numpy().copy() for m in linear))
    rng = np.random.default_rng(0)
    obs, act, nxt = rng.normal(size=(500, 3)), rng.normal(size=(500, 1)), rng.normal(size=(500, 3))
    with torch.no_grad():
        expected = net(torch.as_tensor(np.hstack([obs, act, nxt]), dtype=torch.float32))
    got = mlp(obs, act, nxt)
    assert got.dtype == np.float64 and got.shape == (500,)
    np.testing.assert_allclose(got, expected.numpy()[:, 0], rtol=1e-5, atol=1e-6)
    mlp.save(tmp_path / "net.npz")
    again = RewardMLP.load(tmp_path / "net.npz")
    assert np.array_equal(again(obs, act, nxt), got)
    with pytest.raises(ValueError, match="reads 7 inputs"):
        mlp(obs, act, obs[:, :2])


def test_reward_mlp_refuses_layers_that_do_not_chain():
    weights = {"net_weight_0": np.zeros((4, 3)), "net_bias_0": np.zeros(4),
               "net_weight_1": np.zeros((1, 5)), "net_bias_1": np.zeros(1)}
    with pytest.raises(ValueError, match="layer 1"):
        RewardMLP.from_arrays(weights)


def test_neural_wrapper_gives_the_net_reward_of_each_transition_and_keeps_the_env_reward():
    net = _torch_net([7, 8, 1], seed=1)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    mlp = RewardMLP(tuple(m.weight.detach().numpy() for m in linear),
                    tuple(m.bias.detach().numpy() for m in linear))
    bare = gymnasium.make("Pendulum-v1")
    env = reuse.StepClock(reuse.NeuralRewardWrapper(gymnasium.make("Pendulum-v1"), mlp))
    obs, _ = env.reset(seed=3)
    bare_obs, _ = bare.reset(seed=3)
    assert np.array_equal(obs, bare_obs)
    rng = np.random.default_rng(0)
    rows, rewards = [], []
    for _ in range(30):
        action = rng.uniform(-2, 2, size=1).astype(np.float32)
        next_obs, reward, _, _, info = env.step(action)
        bare_next, bare_reward, _, _, _ = bare.step(action)
        assert info["original_reward"] == bare_reward
        assert np.array_equal(next_obs, bare_next)
        rows.append((obs, action, next_obs))
        rewards.append(reward)
        obs = next_obs
    # one transition at a time, as the wrapper asks (a batch's matrix products may sum in
    # another order: the same values to float32 rounding, not to the bit)
    expected = [mlp(o[None], a[None], n[None])[0] for o, a, n in rows]
    assert rewards == expected
    o, a, n = (np.array(x) for x in zip(*rows, strict=True))
    np.testing.assert_allclose(rewards, mlp(o, a, n), rtol=1e-5, atol=1e-6)
    assert env.steps == 30 and env.seconds > 0
