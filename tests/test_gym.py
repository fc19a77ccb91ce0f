"""The gymnasium wrappers and the imitation library's reward protocol, on real environments.

Every reference reward is ``RewardArtifact.evaluate`` on a ``Dataset`` of the true transitions
(what ``symreward eval`` computes), or the single-environment wrapper where a vector run is
checked against the sub-environments' own episodes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv
from hypothesis import given, settings
from hypothesis import strategies as st

from symreward import RewardArtifact
from symreward.data import Dataset
from symreward.errors import DataError, FeatureError
from symreward.gym import ArtifactRewardVectorWrapper, ArtifactRewardWrapper, autoreset_mode

#: gymnasium >= 1.1 has autoreset modes; 1.0 only the next-step one (and no ``AutoresetMode``).
AutoresetMode = getattr(gym.vector, "AutoresetMode", None)
MODES = ["NextStep", "SameStep"] if AutoresetMode is not None else ["NextStep"]


def make_artifact(features: dict[str, str], terms: dict[str, str]) -> RewardArtifact:
    lines = ['schema = "symreward/1"', 'name = "test"', "", "[features]"]
    lines += [f'{name} = "{text}"' for name, text in features.items()]
    for name, expr in terms.items():
        lines += ["", "[[terms]]", f'name = "{name}"', f'expr = "{expr}"']
    return RewardArtifact.loads("\n".join(lines) + "\n", source="test.toml")


#: Pendulum's reward, and a term on the successor, so a wrong successor changes the reward.
PENDULUM = make_artifact(
    {"theta": "atan2(obs[1], obs[0])", "theta_dot": "obs[2]", "torque": "act[0]",
     "turned": "atan2(next_obs[1], next_obs[0]) - theta", "next_x": "next_obs[0]"},
    {"upright": "-theta**2", "spin": "-0.1 * theta_dot**2", "effort": "-0.001 * torque**2",
     "progress": "0.5 * sin(turned) + 0.2 * next_x"})

#: HalfCheetah-v5's own reward: forward velocity (an info field) less the control cost.
CHEETAH = make_artifact(
    {"x_vel": "info.x_velocity",
     "effort": " + ".join(f"act[{i}]**2" for i in range(6))},
    {"forward": "x_vel", "control": "-0.1 * effort"})


def pendulum(max_episode_steps: int = 200) -> gym.Env:
    return gym.make("Pendulum-v1", max_episode_steps=max_episode_steps)


def dataset(obs, act, next_obs, ended, infos=None) -> Dataset:
    n = len(obs)
    timeouts = np.asarray(ended, dtype=bool).copy()
    timeouts[-1] = True
    return Dataset(observations=np.asarray(obs).reshape(n, -1),
                   actions=np.asarray(act, dtype=np.float64).reshape(n, -1),
                   next_observations=np.asarray(next_obs).reshape(n, -1),
                   terminals=np.zeros(n, bool), timeouts=timeouts,
                   infos={k: np.asarray(v, dtype=np.float64) for k, v in (infos or {}).items()})


def rollout(env: gym.Env, steps: int, seed: int, info_names: tuple[str, ...] = ()) -> dict:
    """``steps`` steps of random actions, resetting at each episode's end: the transitions,
    the rewards the env returned and its infos."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out: dict = {"obs": [], "act": [], "next": [], "reward": [], "original": [], "ended": [],
                 "infos": {name: [] for name in info_names}}
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, info = env.step(action)
        out["obs"].append(np.array(obs))
        out["act"].append(np.array(action))
        out["next"].append(np.array(next_obs))
        out["reward"].append(reward)
        out["original"].append(info.get("original_reward"))
        out["ended"].append(terminated or truncated)
        for name in info_names:
            out["infos"][name].append(info[name])
        obs = env.reset()[0] if terminated or truncated else next_obs
    return out


def evaluated(run: dict, artifact: RewardArtifact) -> np.ndarray:
    return artifact.evaluate(dataset(run["obs"], run["act"], run["next"], run["ended"],
                                     run["infos"])).rewards


# -- the single-environment wrapper --------------------------------------------------------

def test_pendulum_rewards_equal_evaluate_and_the_env_reward_is_kept(tmp_path):
    path = tmp_path / "pendulum.toml"
    PENDULUM.save(path)
    wrapped = rollout(ArtifactRewardWrapper(pendulum(60), str(path)), 150, seed=3)
    bare = rollout(pendulum(60), 150, seed=3)
    assert sum(wrapped["ended"]) == 2  # two episodes end: the wrapper follows the resets
    np.testing.assert_array_equal(np.array(wrapped["obs"]), np.array(bare["obs"]))
    np.testing.assert_allclose(wrapped["reward"], evaluated(wrapped, PENDULUM),
                               rtol=0, atol=1e-12)
    assert wrapped["original"] == bare["reward"]
    assert all(type(r) is float for r in wrapped["reward"])
    assert not np.allclose(wrapped["reward"], bare["reward"])  # the reward is replaced


def test_discrete_actions_are_one_column():
    artifact = make_artifact({"x": "obs[0]", "push": "act[0]", "dx": "next_obs[1]"},
                             {"centre": "-x**2", "push": "0.3 * push", "speed": "-0.1 * dx**2"})
    run = rollout(ArtifactRewardWrapper(gym.make("CartPole-v1"), artifact), 80, seed=1)
    assert 0 < sum(run["ended"]) < 80
    np.testing.assert_allclose(run["reward"], evaluated(run, artifact), rtol=0, atol=1e-12)
    assert run["original"] == [1.0] * 80


def test_halfcheetah_reward_reads_info_and_reproduces_the_env_reward():
    run = rollout(ArtifactRewardWrapper(gym.make("HalfCheetah-v5", max_episode_steps=30),
                                        CHEETAH), 70, seed=0, info_names=("x_velocity",))
    np.testing.assert_allclose(run["reward"], evaluated(run, CHEETAH), rtol=0, atol=1e-12)
    # The artifact is HalfCheetah's own reward formula, so it gives the env's reward back.
    np.testing.assert_allclose(run["reward"], run["original"], rtol=1e-6, atol=1e-6)


def test_an_index_out_of_range_is_an_error_when_the_wrapper_is_built():
    far = make_artifact({"theta": "obs[0]", "far": "obs[3] * 2"}, {"t": "theta + far"})
    with pytest.raises(FeatureError, match=r"test\.toml: features: feature 'far' reads obs\[3\] "
                       r"but environment 'Pendulum-v1' has observations of width 3 .*"
                       r"its formula: 'obs\[3\] \* 2'"):
        ArtifactRewardWrapper(pendulum(), far)
    wide = make_artifact({"push": "act[1]"}, {"t": "push"})
    with pytest.raises(FeatureError, match=r"feature 'push' reads act\[1\] .*actions of width 1"):
        ArtifactRewardWrapper(pendulum(), wide)
    with pytest.raises(FeatureError, match=r"feature 'far' reads obs\[3\]"):
        ArtifactRewardVectorWrapper(SyncVectorEnv([pendulum, pendulum]), far)


def test_a_feature_the_reward_does_not_read_is_not_checked():
    idle = make_artifact({"theta": "obs[0]", "unused": "obs[9] + info.nowhere"},
                         {"t": "-theta**2"})
    run = rollout(ArtifactRewardWrapper(pendulum(), idle), 5, seed=0)
    np.testing.assert_allclose(run["reward"], [-(float(o[0]) ** 2) for o in run["obs"]],
                               rtol=0, atol=1e-12)


def test_a_missing_info_field_is_an_error_at_the_first_step_naming_the_keys_given():
    wanted = make_artifact({"lift": "info.z_velocity", "x": "obs[0]"}, {"t": "lift + x"})
    env = ArtifactRewardWrapper(gym.make("HalfCheetah-v5"), wanted)  # built: spaces fit
    env.reset(seed=0)
    with pytest.raises(FeatureError, match=r"feature 'lift' reads info\.z_velocity but the step "
                       r"info of environment 'HalfCheetah-v5' has no key 'z_velocity' \(infos "
                       r"present: .*x_velocity.*\); its formula: 'info\.z_velocity'"):
        env.step(env.action_space.sample())


def test_step_before_reset_and_observations_that_do_not_fit_are_errors():
    env = ArtifactRewardWrapper(pendulum(), PENDULUM)
    with pytest.raises(DataError, match="call reset"):
        env.step(np.zeros(1, np.float32))
    with pytest.raises(TypeError, match="RewardArtifact or the path"):
        ArtifactRewardWrapper(pendulum(), 3)


# -- the vector wrapper --------------------------------------------------------------------

def vector_rollout(envs, steps: int, seed: int, info_names: tuple[str, ...] = ()) -> dict:
    """A vector run of random actions; the true transitions rebuilt from what the env returns
    (in next-step mode the step after an episode's end is a reset, not a transition)."""
    mode = autoreset_mode(envs)
    envs.action_space.seed(seed)
    obs, _ = envs.reset(seed=seed)
    resets = np.zeros(envs.num_envs, bool)
    out: dict = {"obs": [], "act": [], "next": [], "ended": [], "where": [],
                 "infos": {name: [] for name in info_names}, "reward": [], "original": [],
                 "reset_steps": []}
    for t in range(steps):
        actions = envs.action_space.sample()
        next_obs, reward, terminated, truncated, infos = envs.step(actions)
        ended = terminated | truncated
        out["reward"].append(reward)
        out["original"].append(infos.get("original_reward"))
        for i in range(envs.num_envs):
            if mode == "NextStep" and resets[i]:
                out["reset_steps"].append((t, i))
                continue
            successor, info = next_obs[i], infos
            if mode == "SameStep" and ended[i]:
                successor, info = infos["final_obs"][i], infos["final_info"]
            out["obs"].append(obs[i])
            out["act"].append(actions[i])
            out["next"].append(successor)
            out["ended"].append(ended[i])
            out["where"].append((t, i))
            for name in info_names:
                out["infos"][name].append(info[name][i])
        resets = ended if mode == "NextStep" else resets
        obs = next_obs
    out["reward"], out["original"] = np.array(out["reward"]), np.array(out["original"])
    return out


def vector_env(make, n: int, mode: str) -> SyncVectorEnv:
    if AutoresetMode is None:
        if mode != "NextStep":
            pytest.skip(f"gymnasium {gym.__version__} has no {mode} autoreset mode (1.1 has)")
        return SyncVectorEnv([make for _ in range(n)])
    return SyncVectorEnv([make for _ in range(n)], autoreset_mode=AutoresetMode(mode))


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_rewards_equal_evaluate_on_the_true_transitions(mode):
    make = lambda: pendulum(7)  # noqa: E731 - episodes end often, at different steps per env
    wrapped = vector_rollout(ArtifactRewardVectorWrapper(vector_env(make, 3, mode), PENDULUM),
                             25, seed=5)
    bare = vector_rollout(vector_env(make, 3, mode), 25, seed=5)
    reference = evaluated(wrapped, PENDULUM)
    got = np.array([wrapped["reward"][t, i] for t, i in wrapped["where"]])
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(wrapped["original"], bare["reward"])
    if mode == "NextStep":
        assert len(wrapped["reset_steps"]) == 9  # each env resets after steps 7, 15 and 23
        for t, i in wrapped["reset_steps"]:
            assert wrapped["reward"][t, i] == 0.0 == bare["reward"][t, i]
    else:
        assert sum(wrapped["ended"]) == 9 and not wrapped["reset_steps"]


def test_vector_disabled_mode_restarts_only_the_masked_envs():
    envs = ArtifactRewardVectorWrapper(vector_env(lambda: pendulum(4), 2, "Disabled"),
                                       PENDULUM)
    assert envs.autoreset_mode == "Disabled"
    envs.action_space.seed(0)
    obs, _ = envs.reset(seed=0)
    transitions, rewards = [], []
    for _ in range(12):
        actions = envs.action_space.sample()
        next_obs, reward, terminated, truncated, _ = envs.step(actions)
        transitions += [(obs[i], actions[i], next_obs[i]) for i in range(2)]
        rewards += list(reward)
        obs = next_obs
        ended = terminated | truncated
        if ended.any():
            obs, _ = envs.reset(options={"reset_mask": ended})
    o, a, n = (np.array(x) for x in zip(*transitions, strict=True))
    expected = PENDULUM.evaluate(dataset(o, a, n, np.zeros(len(o), bool))).rewards
    np.testing.assert_allclose(rewards, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_halfcheetah_info_rewards_equal_each_sub_environment_wrapped_alone(mode):
    make = lambda: gym.make("HalfCheetah-v5", max_episode_steps=5)  # noqa: E731
    envs = ArtifactRewardVectorWrapper(vector_env(make, 2, mode), CHEETAH)
    run = vector_rollout(envs, 13, seed=2, info_names=("x_velocity",))
    np.testing.assert_allclose([run["reward"][t, i] for t, i in run["where"]],
                               evaluated(run, CHEETAH), rtol=0, atol=1e-12)
    # The same episodes, each sub-environment alone in the single-environment wrapper.
    actions = np.array(run["act"])
    for i in range(2):
        alone = ArtifactRewardWrapper(make(), CHEETAH)
        alone.reset(seed=2 + i)
        steps = [k for k, (_, j) in enumerate(run["where"]) if j == i]
        for k in steps:
            _, reward, terminated, truncated, _ = alone.step(actions[k])
            t = run["where"][k][0]
            assert abs(reward - run["reward"][t, i]) <= 1e-12
            if terminated or truncated:
                alone.reset()


def test_vector_missing_info_names_the_sub_environment_and_its_keys():
    wanted = make_artifact({"lift": "info.z_velocity"}, {"t": "lift"})
    envs = ArtifactRewardVectorWrapper(
        vector_env(lambda: gym.make("HalfCheetah-v5"), 2, "NextStep"), wanted)
    envs.reset(seed=0)
    with pytest.raises(FeatureError, match=r"info\.z_velocity but the step info of "
                       r"sub-environment 0 of vector environment .* has no key 'z_velocity' "
                       r"\(infos present: .*x_velocity"):
        envs.step(envs.action_space.sample())


# -- reward_fn: the imitation library's protocol --------------------------------------------

def test_reward_fn_takes_imitations_call_and_equals_evaluate():
    """imitation's RewardVecEnvWrapper calls ``reward_fn(old_obs, actions, obs, dones)``
    (positional) and its RewardRelabelCallback adds ``update_stats=False``; imitation itself
    is not installed here (it pins an older gymnasium), so the call is made as it makes it."""
    run = rollout(pendulum(40), 100, seed=4)
    reward_fn = PENDULUM.reward_fn()
    obs, act, nxt = (np.array(run[k]) for k in ("obs", "act", "next"))
    dones = np.array(run["ended"])
    rewards = reward_fn(obs, act, nxt, dones)
    assert rewards.dtype == np.float64 and rewards.shape == (100,)
    np.testing.assert_allclose(rewards, evaluated(run, PENDULUM), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(reward_fn(obs, act, nxt, dones[:, None], update_stats=False),
                                  rewards)
    # done is ignored: the reward is a function of the transition
    np.testing.assert_array_equal(reward_fn(obs, act, nxt, ~dones), rewards)


def test_reward_fn_with_info_fields_needs_infos():
    run = rollout(gym.make("HalfCheetah-v5"), 20, seed=1, info_names=("x_velocity",))
    reward_fn = CHEETAH.reward_fn()
    obs, act, nxt = (np.array(run[k]) for k in ("obs", "act", "next"))
    with pytest.raises(DataError, match=r"reads the info fields \['x_velocity'\] \(features "
                       r"'x_vel'\), and reward_fn was called without infos: pass infos="):
        reward_fn(obs, act, nxt, np.zeros(20, bool))
    with pytest.raises(FeatureError, match="reward_fn's infos has no key 'x_velocity'"):
        reward_fn(obs, act, nxt, None, infos={"x_position": np.zeros(20)})
    got = reward_fn(obs, act, nxt, None, infos={"x_velocity": run["infos"]["x_velocity"]})
    np.testing.assert_allclose(got, evaluated(run, CHEETAH), rtol=0, atol=1e-12)


def test_reward_fn_rejects_batches_that_do_not_fit():
    reward_fn = PENDULUM.reward_fn()
    with pytest.raises(FeatureError, match=r"reads obs\[1\] but the batch given to reward_fn"):
        reward_fn(np.zeros((4, 1)), np.zeros(4), np.zeros((4, 1)), None)
    with pytest.raises(DataError, match="same N transitions"):
        reward_fn(np.zeros((4, 3)), np.zeros(3), np.zeros((4, 3)), None)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 30), discrete=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_reward_fn_equals_evaluate_on_any_batch(n, discrete, seed):
    rng = np.random.default_rng(seed)
    obs, nxt = rng.normal(size=(n, 3)) * 3, rng.normal(size=(n, 3)) * 3
    act = rng.integers(0, 3, size=n) if discrete else rng.normal(size=(n, 1))
    got = PENDULUM.reward_fn()(obs, act, nxt, np.zeros(n, bool))
    assert got.shape == (n,)
    if n:
        np.testing.assert_array_equal(
            got, PENDULUM.evaluate(dataset(obs, act, nxt, np.zeros(n, bool))).rewards)


@settings(max_examples=12, deadline=None)
@given(episode=st.integers(1, 6), n_envs=st.integers(1, 3),
       mode=st.sampled_from(MODES),
       seed=st.integers(0, 1000))
def test_vector_rewards_equal_evaluate_for_any_episode_length(episode, n_envs, mode, seed):
    envs = ArtifactRewardVectorWrapper(vector_env(lambda: pendulum(episode), n_envs, mode),
                                       PENDULUM)
    run = vector_rollout(envs, 10, seed=seed)
    np.testing.assert_allclose([run["reward"][t, i] for t, i in run["where"]],
                               evaluated(run, PENDULUM), rtol=0, atol=1e-12)
    assert all(run["reward"][t, i] == 0.0 for t, i in run["reset_steps"])


# -- without gymnasium ---------------------------------------------------------------------

def test_without_gymnasium_the_import_says_what_to_install():
    code = textwrap.dedent("""
        import sys
        sys.modules["gymnasium"] = None  # as if it were not installed
        try:
            import symreward.gym
        except ImportError as exc:
            print(exc)
        import symreward
        print(symreward.RewardArtifact.__name__)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "symreward.gym needs gymnasium: install symreward[gym]", "RewardArtifact"]
