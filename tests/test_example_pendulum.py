"""The hand-written artifact in examples/pendulum is Pendulum-v1's own reward."""

from pathlib import Path

import gymnasium
import numpy as np

from symreward.cli import main
from symreward.data import collect, save_dataset

EXAMPLE = Path(__file__).parent.parent / "examples" / "pendulum"


def mixed_policy(obs, rng):
    """Random torques beyond the action bounds half the time (the env clips them), a PD
    controller otherwise, so every term of the reward varies."""
    if rng.random() < 0.5:
        return rng.uniform(-3.0, 3.0, size=1).astype(np.float32)
    theta = np.arctan2(obs[1], obs[0])
    return np.array([-2.0 * theta - 0.5 * obs[2]], dtype=np.float32)


class ExactStateObservation(gymnasium.ObservationWrapper):
    """Pendulum's observation rebuilt in float64 from the internal state. The env itself rounds
    observations to float32, which caps agreement with its float64 reward near 1e-7."""

    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float64)

    def observation(self, observation):
        theta, theta_dot = self.unwrapped.state
        return np.array([np.cos(theta), np.sin(theta), theta_dot], dtype=np.float64)


def eval_rewards(tmp_path, dataset):
    data = tmp_path / "pendulum.npz"
    save_dataset(dataset, data)
    out = tmp_path / "rewards.npy"
    assert main(["eval", str(EXAMPLE / "reward.toml"), str(data), "-o", str(out)]) == 0
    return np.load(out)


def test_eval_equals_environment_reward_to_1e9(tmp_path):
    env = ExactStateObservation(gymnasium.make("Pendulum-v1"))
    dataset = collect(env, mixed_policy, n_steps=1000, seed=3)
    rewards = eval_rewards(tmp_path, dataset)
    assert np.abs(dataset.actions).max() > 2.0  # the clip in the effort term is exercised
    np.testing.assert_allclose(rewards, dataset.rewards, rtol=0, atol=1e-9)


def test_eval_on_float32_collected_data_matches_to_float32_precision(tmp_path):
    dataset = collect("Pendulum-v1", mixed_policy, n_steps=1000, seed=4)
    assert dataset.observations.dtype == np.float32
    rewards = eval_rewards(tmp_path, dataset)
    np.testing.assert_allclose(rewards, dataset.rewards, rtol=0, atol=2e-5)


def test_features_file_matches_the_artifact():
    from symreward.artifact import RewardArtifact
    from symreward.features import FeatureSet

    features = FeatureSet.from_toml(EXAMPLE / "features.toml")
    assert features.to_dict() == RewardArtifact.load(EXAMPLE / "reward.toml").features.to_dict()


def test_example_invariants_are_proved(capsys):
    assert main(["check", str(EXAMPLE / "reward.toml")]) == 0
    out = capsys.readouterr().out
    assert "3 proved, 0 held, 0 violated" in out
