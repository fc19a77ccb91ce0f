"""gymnasium wrappers that give an environment's steps the reward of an artifact.

``ArtifactRewardWrapper`` wraps one environment and computes each step's reward with the
compiled single-transition kernel; ``ArtifactRewardVectorWrapper`` wraps a gymnasium 1.x vector
environment and computes all sub-environments' rewards with one call of the batch kernel. Both
return the environment's own reward as ``info["original_reward"]``, and both check the artifact
against the environment's spaces when they are built (indices read in range) and its step info
when it comes (every ``info.<name>`` the reward reads present): the errors name the feature and
its formula. The reward of a step is the artifact's reward of the transition (obs, action,
next obs, step info), the value ``RewardArtifact.evaluate`` gives that transition in a dataset.

Observations are flattened (Box spaces), Discrete actions are one column, as in the datasets
symreward reads (``symreward.data.spaces``).

A vector environment resets its sub-environments itself (autoreset); the wrapper reads how
from ``metadata["autoreset_mode"]`` (gymnasium >= 1.1; 1.0 has only the next-step mode):

- next step (the default): the step after an episode's end resets that sub-environment, ignores
  its action and returns the reset observation with reward 0. There is no transition there, so
  the wrapper gives 0 too, and the reset observation is the start of the next transition.
- same step: the ending step returns the next episode's first observation; the true successor
  is ``info["final_obs"]`` and the step's own info ``info["final_info"]``, which the reward reads.
- disabled: every step is a transition; ``reset(options={"reset_mask": ...})`` restarts the
  sub-environments it names.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

try:
    import gymnasium
    from gymnasium import spaces
    from gymnasium.vector import VectorEnv, VectorWrapper
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without gymnasium
    raise ImportError("symreward.gym needs gymnasium: install symreward[gym]") from exc

from symreward.artifact import RewardArtifact
from symreward.data.collect import _describe
from symreward.data.spaces import require_supported_spaces
from symreward.errors import DataError
from symreward.reuse import RewardInputs, flat_rows

__all__ = ["ArtifactRewardVectorWrapper", "ArtifactRewardWrapper", "autoreset_mode"]

ArtifactLike = RewardArtifact | str | os.PathLike[str]

NEXT_STEP, SAME_STEP, DISABLED = "NextStep", "SameStep", "Disabled"


def _artifact(artifact: ArtifactLike) -> RewardArtifact:
    if isinstance(artifact, RewardArtifact):
        return artifact
    if isinstance(artifact, str | os.PathLike):
        return RewardArtifact.load(artifact)
    raise TypeError(f"artifact must be a RewardArtifact or the path of one, not "
                    f"{type(artifact).__name__}")


def _widths(observation_space: Any, action_space: Any, shown: str
            ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The observation's and the action's shapes, checked to be ones a dataset can hold; a
    Discrete action is one value."""
    require_supported_spaces(observation_space, action_space, shown)
    act_shape = (1,) if isinstance(action_space, spaces.Discrete) else action_space.shape
    return tuple(observation_space.shape), tuple(act_shape)


class ArtifactRewardWrapper(gymnasium.Wrapper):
    """An environment whose steps return the reward of ``artifact`` (a ``RewardArtifact`` or
    the path of one); the environment's own reward is ``info["original_reward"]``.

    The reward of a step is the artifact's reward of (the last observation, the action, the
    observation the step returned, the step's info), computed by the compiled single-transition
    kernel on preallocated float64 rows. Raises ``FeatureError`` when built if the reward reads
    an observation or action index the spaces do not have, and at a step whose info lacks a
    field ``info.<name>`` it reads, naming the feature, its formula and the keys the info has.
    """

    def __init__(self, env: gymnasium.Env, artifact: ArtifactLike):
        super().__init__(env)
        self.artifact = _artifact(artifact)
        self._shown = f"environment {_describe(env)!r}"
        obs_shape, act_shape = _widths(env.observation_space, env.action_space, self._shown)
        inputs = RewardInputs(self.artifact)
        inputs.check_widths(math.prod(obs_shape), math.prod(act_shape), self._shown)
        self._inputs = inputs
        self._kernel = inputs.kernels.single_raw  # compiled (or loaded) now, not at step one
        rows = [np.zeros(math.prod(obs_shape)) for _ in range(2)]
        self._obs, self._next = ((row, row.reshape(obs_shape)) for row in rows)
        self._act = np.zeros(math.prod(act_shape))
        self._act_view = self._act.reshape(act_shape)
        self._info = np.zeros(len(inputs.kernels.info_names))
        self._info_fields = tuple(zip(inputs.info_names, inputs.info_columns, strict=True))
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        try:
            self._obs[1][...] = obs
        except (TypeError, ValueError) as exc:
            raise self._unfit(obs, self._obs[1], "observation", exc) from None
        self._started = True
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise DataError(f"{self._shown}: call reset() before step(): the reward of a step "
                            "reads the observation it starts from")
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        # Copies into the preallocated float64 rows, in place: a step allocates no array.
        obs, successor = self._obs, self._next
        try:
            self._act_view[...] = action
        except (TypeError, ValueError) as exc:
            raise self._unfit(action, self._act_view, "action", exc) from None
        try:
            successor[1][...] = next_obs
        except (TypeError, ValueError) as exc:
            raise self._unfit(next_obs, successor[1], "observation", exc) from None
        for name, column in self._info_fields:
            self._info[column] = self._info_value(info, name)
        value = self._kernel(obs[0], self._act, successor[0], self._info)
        self._obs, self._next = successor, obs  # this successor starts the next transition
        info["original_reward"] = reward
        return next_obs, value, terminated, truncated, info

    def _unfit(self, values: Any, row: np.ndarray, what: str, exc: Exception) -> DataError:
        return DataError(f"{self._shown}: an {what} of shape {np.shape(values)} does not fit the "
                         f"space's shape {row.shape}: {exc}")

    def _info_value(self, info: dict[str, Any], name: str) -> float:
        try:
            return float(info[name])
        except KeyError:
            self._inputs.check_infos(set(info), f"the step info of {self._shown}",
                                     info_key="{}")
            raise
        except (TypeError, ValueError):
            raise DataError(f"{self._shown}: info[{name!r}] = {info[name]!r} is not a number "
                            f"(the reward reads info.{name})") from None


def autoreset_mode(envs: VectorEnv) -> str:
    """How ``envs`` resets its sub-environments: ``"NextStep"``, ``"SameStep"`` or
    ``"Disabled"``, from ``metadata["autoreset_mode"]``; next step where it is not set (the
    only mode of gymnasium 1.0, and the default after)."""
    mode = envs.metadata.get("autoreset_mode", NEXT_STEP)
    value = getattr(mode, "value", mode)
    if value not in (NEXT_STEP, SAME_STEP, DISABLED):
        raise DataError(f"vector environment {_describe(envs)!r}: unknown autoreset_mode "
                        f"{mode!r}")
    return value


class ArtifactRewardVectorWrapper(VectorWrapper):
    """A gymnasium vector environment whose steps return the rewards of ``artifact`` (a
    ``RewardArtifact`` or the path of one), all sub-environments' in one call of the batch
    kernel; the environments' own rewards are ``info["original_reward"]`` (with the mask
    ``info["_original_reward"]``, as vector infos have).

    Correct across autoreset in each of gymnasium's modes (module docstring): no reward is
    computed from a reset observation as if it were a successor. The checks are those of
    ``ArtifactRewardWrapper``, on the single observation and action spaces, and on each
    sub-environment's info at every step (vector infos: arrays with ``_name`` masks).
    """

    def __init__(self, envs: VectorEnv, artifact: ArtifactLike):
        super().__init__(envs)
        self.artifact = _artifact(artifact)
        self._shown = f"vector environment {_describe(envs)!r}"
        self._obs_shape, act_shape = _widths(envs.single_observation_space,
                                             envs.single_action_space, self._shown)
        inputs = RewardInputs(self.artifact)
        self._obs_dim = math.prod(self._obs_shape)
        inputs.check_widths(self._obs_dim, math.prod(act_shape), self._shown)
        self._inputs = inputs
        self.autoreset_mode = autoreset_mode(envs)
        self._last: np.ndarray | None = None
        #: Sub-environments whose next step is a reset (next-step mode): no transition there.
        self._resets_next = np.zeros(envs.num_envs, dtype=bool)
        self._no_env, self._every_env = (np.full(envs.num_envs, v) for v in (False, True))

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        mask = None if options is None else options.get("reset_mask")
        mask = None if mask is None else np.array(mask, dtype=bool)  # reset pops it
        obs, infos = self.env.reset(seed=seed, options=options)
        rows = self._rows(obs, "observations")
        if mask is None or self._last is None:
            self._last, self._resets_next[:] = rows, False
        else:
            self._last[mask], self._resets_next[mask] = rows[mask], False
        return obs, infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        if self._last is None:
            raise DataError(f"{self._shown}: call reset() before step(): the reward of a step "
                            "reads the observation it starts from")
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        rows = self._rows(obs, "observations")
        ended = np.logical_or(terminations, truncations)
        successors, final = rows, self._no_env
        if self.autoreset_mode == SAME_STEP and ended.any():
            successors, final = rows.copy(), ended
            for i in np.flatnonzero(ended):
                successors[i] = np.reshape(infos["final_obs"][i], -1)
        act = flat_rows(actions, "actions", self._shown)
        info = self._info_table(infos, ~self._resets_next, final) if self._inputs.info_names \
            else None
        values = self._inputs.kernels.rewards(self._last, act, successors, info)
        if self.autoreset_mode == NEXT_STEP:
            values[self._resets_next] = 0.0
            self._resets_next = ended
        self._last = rows
        infos["original_reward"] = rewards
        infos["_original_reward"] = self._every_env.copy()
        return obs, values, terminations, truncations, infos

    def _rows(self, obs: Any, what: str) -> np.ndarray:
        rows = flat_rows(obs, what, self._shown)
        if rows.shape != (self.num_envs, self._obs_dim):
            raise DataError(f"{self._shown}: {what} of shape {np.shape(obs)} do not fit "
                            f"{self.num_envs} sub-environments of shape {self._obs_shape}")
        # Kept past the environment's next step, which may write into the array it returned.
        return rows.copy() if np.may_share_memory(rows, obs) else rows

    def _info_table(self, infos: dict[str, Any], transition: np.ndarray, final: np.ndarray
                    ) -> np.ndarray:
        """The kernels' info array: each transition's info fields, from the step's infos or,
        for a sub-environment reset in the same step, from ``infos["final_info"]``."""
        inputs = self._inputs
        table = np.zeros((self.num_envs, len(inputs.kernels.info_names)))
        sources = ((infos, transition & ~final), (infos.get("final_info", {}), final))
        for source, rows in sources:
            if not rows.any():
                continue
            for name, column in zip(inputs.info_names, inputs.info_columns, strict=True):
                values, mask = source.get(name), source.get(f"_{name}")
                missing = rows if values is None else rows & ~np.asarray(
                    True if mask is None else mask, dtype=bool)
                if missing.any():
                    i = int(np.flatnonzero(missing)[0])
                    inputs.check_infos(_keys_of(source, i),
                                       f"the step info of sub-environment {i} of {self._shown}",
                                       info_key="{}")
                try:
                    table[rows, column] = np.asarray(np.asarray(values)[rows], dtype=np.float64)
                except (TypeError, ValueError):
                    raise DataError(f"{self._shown}: info[{name!r}] holds values that are not "
                                    f"numbers (the reward reads info.{name})") from None
        return table


def _keys_of(infos: dict[str, Any], i: int) -> list[str]:
    """The keys a vector info gives sub-environment ``i``: those whose ``_key`` mask is set."""
    keys = []
    for key in infos:
        mask = infos.get(f"_{key}")
        if not key.startswith("_") and (mask is None or bool(np.asarray(mask)[i])):
            keys.append(key)
    return keys
