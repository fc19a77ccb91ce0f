"""A reward artifact's reward as other libraries call it: the imitation library's ``reward_fn``
protocol (``RewardArtifact.reward_fn``), and what the reward reads of a transition, checked
against the arrays or the environment it is given (shared with ``symreward.gym``).

Only the features the reward reads (those its terms use, and the ones those use) are checked:
the kernels compute no other, so a feature the terms never use cannot read out of range, and an
``info.<name>`` field only such a feature reads is not asked for. Info columns the reward does
not read are passed to the kernels as zeros.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward.errors import DataError, FeatureError
from symreward.features import FeatureSet

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact
    from symreward.kernels import RewardKernels

__all__ = ["ImitationRewardFn", "RewardInputs", "flat_rows", "reward_function"]

#: imitation's ``RewardFn``: ``(state, action, next_state, done) -> rewards``, batched.
ImitationRewardFn = Callable[..., np.ndarray]


class RewardInputs:
    """What the reward of ``artifact`` reads of a transition, and its compiled kernels.

    ``obs_width`` and ``act_width`` are the fewest observation and action values it needs
    (one more than the highest index read); ``info_names`` the info fields it reads, each the
    column ``info_columns[k]`` of the kernels' info array (which has ``len(kernels.info_names)``
    columns, in that order).
    """

    def __init__(self, artifact: RewardArtifact):
        self.kernels: RewardKernels = artifact.compile()
        used = sorted({s.name for expr in artifact.term_exprs() for s in expr.free_symbols})
        self.features: FeatureSet = artifact.features
        self.read = frozenset(self.features.dependencies(used))
        inputs = self.features.inputs(self.read)
        self.obs_width = max(inputs["obs"] | inputs["next_obs"], default=-1) + 1
        self.act_width = max(inputs["act"], default=-1) + 1
        self.info_names: tuple[str, ...] = tuple(sorted(inputs["info"]))
        self.info_columns = tuple(self.kernels.info_names.index(n) for n in self.info_names)
        self.source = artifact.source

    def check_widths(self, obs_dim: int, act_dim: int, data_source: str) -> None:
        """A ``FeatureError`` naming the feature and its formula if the reward reads an
        observation or action index at or past ``obs_dim`` / ``act_dim``."""
        if obs_dim < self.obs_width or act_dim < self.act_width:
            self._check(obs_dim, act_dim, self.info_names, data_source, "infos/{}")

    def check_infos(self, present: Collection[str], data_source: str,
                    info_key: str = "infos/{}") -> None:
        """A ``FeatureError`` naming the feature and the keys ``present`` if the reward reads an
        info field that is not among them; ``info_key`` is how the message writes a key."""
        if not all(name in present for name in self.info_names):
            self._check(self.obs_width, self.act_width, present, data_source, info_key)

    def missing_infos_message(self, where: str) -> str:
        """The message for a call that gives no infos to a reward that reads some."""
        readers = sorted(f"'{f}'" for f in self.read
                         if set(self.features.inputs([f])["info"]) & set(self.info_names))
        return (f"{self.source}: this reward reads the info fields {list(self.info_names)} "
                f"(features {', '.join(readers)}), and {where} was called without infos: pass "
                f"infos={{name: array of N values}}, or wrap the environment in "
                f"symreward.gym.ArtifactRewardWrapper / ArtifactRewardVectorWrapper, which read "
                f"them from each step's info")

    def info_table(self, infos: Mapping[str, Any] | None, n: int, where: str
                   ) -> np.ndarray | None:
        """The kernels' (n, len(kernels.info_names)) info array from ``infos`` (name to N
        values); None when the reward reads no info."""
        if not self.info_names:
            return None
        if infos is None:
            raise DataError(self.missing_infos_message(where))
        if not isinstance(infos, Mapping):
            raise DataError(f"{where}: infos must be a mapping of info name to N values, not "
                            f"{type(infos).__name__}")
        self.check_infos(set(infos), f"{where}'s infos", info_key="{}")
        table = np.zeros((n, len(self.kernels.info_names)))
        for name, column in zip(self.info_names, self.info_columns, strict=True):
            values = np.asarray(infos[name], dtype=np.float64)
            if values.shape != (n,):
                raise DataError(f"{where}: infos[{name!r}] has shape {values.shape}; it needs "
                                f"({n},), one value per transition")
            table[:, column] = values
        return table

    def _check(self, obs_dim: int, act_dim: int, info_names: Collection[str],
               data_source: str, info_key: str) -> None:
        try:
            self.features.check_dimensions(obs_dim, act_dim, info_names,
                                           data_source=data_source, names=self.read,
                                           info_key=info_key)
        except FeatureError as exc:
            raise FeatureError(f"{self.source}: {exc}") from None


def flat_rows(values: Any, name: str, where: str) -> np.ndarray:
    """``values`` as (N, width) float64 rows: each row flattened, a 1-D array one column
    (a batch of Discrete actions)."""
    array = np.asarray(values)
    if array.ndim == 0:
        raise DataError(f"{where}: {name} must be a batch (N, ...), got a scalar")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: {name} must hold numbers, got dtype {array.dtype}")
    width = math.prod(array.shape[1:])  # np.prod costs µs per call
    return np.ascontiguousarray(array.reshape(len(array), width), dtype=np.float64)


def reward_function(artifact: RewardArtifact) -> ImitationRewardFn:
    """The reward of ``artifact`` as imitation's ``RewardFn``, for ``RewardArtifact.reward_fn``.

    The callable is ``fn(state, action, next_state, done, *, infos=None)``: batches of N
    observations, actions (N, ...) or (N,) for Discrete, successors, done flags, and the info
    fields the reward reads as ``infos={name: (N,) values}``; it returns (N,) float64. ``done``
    is accepted and ignored: the reward is a function of the transition (s, a, s') alone, so
    whether an episode ended there does not change it (the protocol passes it for rewards that
    do read it). ``update_stats`` is accepted for imitation's ``RewardRelabelCallback``,
    which passes ``update_stats=False``, and ignored: the reward keeps no statistics.
    """
    inputs = RewardInputs(artifact)
    where = "reward_fn"

    def reward_fn(state: Any, action: Any, next_state: Any, done: Any, *,
                  infos: Mapping[str, Any] | None = None, update_stats: bool = True
                  ) -> np.ndarray:
        # The reward reads (s, a, s') only (see reward_function's docstring); a symbolic
        # reward keeps no running statistics, so imitation's update_stats=False changes nothing.
        del done, update_stats
        obs = flat_rows(state, "state", where)
        act = flat_rows(action, "action", where)
        next_obs = flat_rows(next_state, "next_state", where)
        n = len(obs)
        if len(act) != n or next_obs.shape != obs.shape:
            raise DataError(f"{where}: state {obs.shape}, action {act.shape} and next_state "
                            f"{next_obs.shape} must be batches of the same N transitions (and "
                            f"state and next_state of the same width)")
        inputs.check_widths(obs.shape[1], act.shape[1], f"the batch given to {where}")
        return inputs.kernels.rewards(obs, act, next_obs, inputs.info_table(infos, n, where))

    return reward_fn
