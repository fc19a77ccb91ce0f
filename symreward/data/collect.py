"""Collecting a dataset by running a policy in a gymnasium environment.

Used for examples, benchmarks and tests, where a reproducible dataset from a known environment
(and hence a known true reward) is needed. ``gymnasium`` is imported only when collecting.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward.data.dataset import Dataset
from symreward.data.spaces import require_supported_spaces
from symreward.errors import DataError

if TYPE_CHECKING:
    import gymnasium

__all__ = ["Policy", "collect"]

#: ``policy(obs, rng) -> action``; ``rng`` is a seeded ``numpy.random.Generator``.
Policy = Callable[[np.ndarray, np.random.Generator], Any]


def _import_gymnasium() -> Any:
    try:
        import gymnasium
    except ImportError as e:
        raise DataError(
            "collecting from an environment needs gymnasium: install symreward[gym]"
        ) from e
    return gymnasium


def _scalar(value: Any) -> float | None:
    """The value as a float if it is a finite numeric scalar (Python or numpy, shape ()).

    Non-finite values count as absent: a column with a NaN would fail dataset validation, and
    dropping that one info is better than failing the whole collection run.
    """
    if isinstance(value, np.ndarray):
        numeric = value.shape == () and value.dtype.kind in "biuf"
    else:
        numeric = isinstance(value, bool | numbers.Real | np.bool_)
    if not numeric:
        return None
    x = float(value)
    return x if np.isfinite(x) else None


def describe_env(env: Any) -> str:
    """The env's registered id, or its class name when it was built without ``gymnasium.make``."""
    spec = getattr(env, "spec", None)
    spec_id = getattr(spec, "id", None)
    return spec_id if isinstance(spec_id, str) and spec_id else type(env).__name__


def collect(
    env: str | gymnasium.Env,
    policy: Policy | str,
    n_steps: int,
    seed: int,
    *,
    max_episode_steps: int | None = None,
) -> Dataset:
    """Run ``policy`` in an environment for exactly ``n_steps`` transitions.

    ``env`` is an environment id, made here with ``gymnasium.make(env, max_episode_steps=...)``
    and closed afterwards, or an already constructed ``gymnasium.Env`` (wrappers included), which
    is used as is and left open: the caller owns it. ``max_episode_steps`` applies only to an id;
    wrap an instance in ``gymnasium.wrappers.TimeLimit`` instead. Messages and the dataset's
    source name the env by its spec id (its class name if it has no spec).

    ``policy`` is ``"random"`` (the action space's own sampler, seeded) or a callable
    ``policy(obs, rng) -> action``. The env is reset with ``seed`` once, and later resets continue
    its RNG, so the same arguments give the same dataset. ``next_observations`` at an episode end
    is the observation the step returned, not the next reset's. Observations are stored as
    floats at least as wide as both the observation space's dtype and the observations the env
    returns. Numeric scalar infos that are present and finite on every step become
    ``infos/<name>``. The last row is marked as a timeout if the run stops mid-episode, so
    segments never run past the data.
    """
    if not isinstance(n_steps, numbers.Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    gym = _import_gymnasium()

    if isinstance(env, str):
        env_id = env
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
        try:
            instance = gym.make(env_id, **kwargs)
        except gym.error.Error as e:
            raise DataError(f"environment {env_id!r}: cannot be created: {e}") from e
        owned = True
    elif isinstance(env, gym.Env):
        if max_episode_steps is not None:
            raise ValueError(
                "max_episode_steps applies only when env is an id; wrap an environment instance "
                "in gymnasium.wrappers.TimeLimit instead"
            )
        instance, env_id, owned = env, describe_env(env), False
    else:
        raise TypeError(f"env must be an environment id or a gymnasium.Env, got {env!r}")
    try:
        obs_space, act_space = instance.observation_space, instance.action_space
        require_supported_spaces(obs_space, act_space, f"environment {env_id!r}")
        return _run(instance, env_id, policy, int(n_steps), int(seed), obs_space, act_space)
    finally:
        if owned:
            instance.close()


def _run(
    env: Any,
    env_id: str,
    policy: Policy | str,
    n_steps: int,
    seed: int,
    obs_space: Any,
    act_space: Any,
) -> Dataset:
    from gymnasium import spaces

    if isinstance(policy, str):
        if policy != "random":
            raise ValueError(f"policy must be a callable or 'random', got {policy!r}")
        act_space.seed(seed)

        def act(obs: np.ndarray) -> Any:
            return act_space.sample()
    else:
        rng = np.random.default_rng(seed)

        def act(obs: np.ndarray) -> Any:
            return policy(obs, rng)

    obs_dim = int(np.prod(obs_space.shape))
    act_dim = 1 if isinstance(act_space, spaces.Discrete) else int(np.prod(act_space.shape))
    obs, _ = env.reset(seed=seed)
    # Never narrow: an env (or wrapper) may return wider floats than its space declares.
    floats = [d for d in (np.dtype(obs_space.dtype), np.asarray(obs).dtype) if d.kind == "f"]
    obs_dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    observations = np.empty((n_steps, obs_dim), dtype=obs_dtype)
    next_observations = np.empty_like(observations)
    actions = np.empty((n_steps, act_dim), dtype=np.float64)
    rewards = np.empty(n_steps, dtype=np.float64)
    terminals = np.zeros(n_steps, dtype=bool)
    timeouts = np.zeros(n_steps, dtype=bool)
    infos: dict[str, np.ndarray] | None = None

    for t in range(n_steps):
        action = act(obs)
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape[0] != act_dim:
            raise DataError(
                f"environment {env_id!r}: policy returned an action with {a.shape[0]} values at "
                f"step {t}; the action space {act_space} needs {act_dim}"
            )
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations[t] = np.asarray(obs).reshape(-1)
        actions[t] = a
        next_observations[t] = np.asarray(next_obs).reshape(-1)
        rewards[t] = float(reward)
        terminals[t] = bool(terminated)
        timeouts[t] = bool(truncated)
        step_infos = {k: v for k, v in info.items() if isinstance(k, str) and "/" not in k}
        scalars = {k: s for k, v in step_infos.items() if (s := _scalar(v)) is not None}
        if infos is None:
            infos = {k: np.empty(n_steps, dtype=np.float64) for k in scalars}
        else:
            for k in [k for k in infos if k not in scalars]:
                del infos[k]  # an info missing on some step cannot be a per-transition column
        for k in infos:
            infos[k][t] = scalars[k]
        if terminated or truncated:
            obs, _ = env.reset()
        else:
            obs = next_obs
    if not terminals[-1]:
        timeouts[-1] = True
    return Dataset(
        observations=observations,
        actions=actions,
        next_observations=next_observations,
        terminals=terminals,
        timeouts=timeouts,
        rewards=rewards,
        infos=infos or {},
        source=f"collected from {env_id} (seed {seed}, {n_steps} steps)",
    )
