"""The EPIC distance between two reward functions.

EPIC (Equivalent-Policy Invariant Comparison; Gleave et al. 2020, "Quantifying Differences in
Reward Functions", arXiv:2006.13900) compares rewards by what they make optimal rather than by their
raw numbers: two rewards that differ by a positive scale, an additive constant or potential
shaping ``γΦ(s') − Φ(s)`` induce the same optimal policies in every MDP, so their distance is 0.
That is the right yardstick for a symbolic reward learned from preferences, whose scale and offset
are arbitrary and which may well have picked up a shaping term.

EPIC works in two steps, both done here from offline data only:

1. **Canonicalise** each reward so that shaping drops out (``canonicalize``)::

       C(R)(s,a,s') = R(s,a,s') + E[γR(s',A,S') − R(s,A,S') − γR(S,A,S')]

   with ``S, S' ~ D_S`` and ``A ~ D_A`` drawn independently from coverage distributions. The
   expectations are estimated by means over one fixed set of samples, as in the reference
   implementation (``sample_canon_shaping`` in the ``evaluating-rewards`` repository).
2. Take the **Pearson distance** ``sqrt((1 − ρ) / 2)`` between the two canonical rewards over
   transitions from an evaluation distribution (``pearson_distance``); it removes scale and
   offset, and lies in [0, 1].

A property worth knowing: because the same samples estimate every expectation, the estimated
canonicalisation removes a shaping term *exactly*, for any number of samples (the shaping
contributions cancel term by term, leaving only a constant). What the finite sample size does
affect is the distance between rewards that are *not* equivalent: the sampling error of the mean
term is itself a shaping-like perturbation, which shrinks as ``n_mean`` grows.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import numpy as np

from symreward.data.dataset import Dataset
from symreward.errors import SymrewardError

__all__ = ["RewardFn", "canonicalize", "epic_distance", "epic_inputs", "is_constant",
           "pearson_distance"]

#: A batched reward: ``(obs (N, obs_dim), act (N, act_dim), next_obs (N, obs_dim), infos {name:
#: (N,)}) -> (N,)``. It must be a pure function of its arguments; it may be called many times on
#: synthetic transitions that never occurred, with arbitrary batch sizes.
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]], np.ndarray]

#: Upper bound on the bytes of tiled inputs built for one call of the reward during the mean
#: estimate. The mean term needs ``(#states × n_mean)`` reward evaluations, far more than fit
#: in memory at once for large inputs, while very small batches waste time in Python overhead.
DEFAULT_BATCH_BYTES = 1 << 26

#: A canonical reward whose spread is below this fraction of the largest reward value seen while
#: canonicalising it is treated as constant: canonicalising a constant (or a pure shaping term)
#: leaves only rounding noise of a few ulps of the reward's magnitude, never an exact zero.
_CONSTANT_RTOL = 1e-10


# ---------------------------------------------------------------------------- Pearson distance


def pearson_distance(x: np.ndarray, y: np.ndarray) -> float:
    """The Pearson distance ``sqrt((1 − ρ(x, y)) / 2)`` between two samples, in [0, 1].

    It is computed as ``‖u − v‖ / 2`` for the centred, unit-norm vectors ``u`` and ``v``, which
    is the same quantity (``‖u − v‖² = 2 − 2ρ``) but keeps full relative precision near ρ = 1:
    the textbook form subtracts two nearly equal numbers and, through the square root, turns a
    rounding error of 1e-16 in ρ into a distance of 1e-8 between identical rewards.

    Raises ``SymrewardError`` (a ``ValueError``) when the inputs are not matching 1-D finite
    arrays of at least two values, or when either is constant (ρ is undefined then, and any
    number reported in its place would mislead).
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.ndim != 1 or ys.shape != xs.shape:
        raise SymrewardError(
            f"pearson_distance needs two 1-D arrays of the same length; got shapes "
            f"{xs.shape} and {ys.shape}"
        )
    if xs.shape[0] < 2:
        raise SymrewardError("pearson_distance needs at least 2 values to correlate")
    units = []
    for name, values in (("x", xs), ("y", ys)):
        if not np.all(np.isfinite(values)):
            raise SymrewardError(f"pearson_distance: {name} contains NaN or inf")
        centred = values - values.mean()
        peak = np.max(np.abs(centred))
        if peak == 0.0:
            raise SymrewardError(
                f"pearson_distance: {name} is constant, so its correlation is undefined"
            )
        centred /= peak  # guards the norm against overflow for huge values
        units.append(centred / np.linalg.norm(centred))
    distance = float(np.linalg.norm(units[0] - units[1]) / 2.0)
    return min(distance, 1.0)


# ---------------------------------------------------------------------------- canonicalisation


def canonicalize(
    reward: RewardFn,
    obs: np.ndarray,
    act: np.ndarray,
    next_obs: np.ndarray,
    infos: Mapping[str, np.ndarray] | None = None,
    *,
    coverage_obs: np.ndarray,
    coverage_act: np.ndarray,
    coverage_next_obs: np.ndarray | None = None,
    coverage_infos: Mapping[str, np.ndarray] | None = None,
    discount: float,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> np.ndarray:
    """The sample-based EPIC canonical reward of ``reward`` at the transitions ``(obs, act,
    next_obs, infos)``.

    ``C(R)(s,a,s') = R(s,a,s') + γ·M(s') − M(s) − γ·T``, where
    ``M(x) = mean_j R(x, A_j, S'_j)`` over the paired samples ``coverage_act[j]``,
    ``coverage_next_obs[j]`` and ``T = mean_i M(S_i)`` over ``coverage_obs[i]``. The caller draws
    the samples (independently, from the coverage distributions D_A and D_S); passing the same
    samples for two rewards is what makes their canonical rewards comparable.

    ``coverage_next_obs`` defaults to ``coverage_obs`` (then S and S' share draws, as in the
    reference implementation); otherwise it must have as many rows as ``coverage_act``.

    Infos: a reward may read ``infos`` (e.g. ``x_velocity``), but the synthetic transitions
    ``(x, A_j, S'_j)`` never happened, so there is no true info for them. The approximation used
    here treats info as a function of the *next state*: every evaluation on ``S'_j`` receives
    ``coverage_infos`` row ``j``, whatever the first state and action are. ``coverage_infos``
    must have the same names as ``infos`` (a reward reading a name must find it in both).

    Episode ends are ignored: EPIC is defined for infinite-horizon MDPs, and the reward signature
    carries no ``done`` flag.

    Memory: the mean term evaluates the reward on ``#distinct states × n_mean`` transitions; it
    does so in chunks whose tiled inputs stay under ``max_batch_bytes``.
    """
    values, _ = _canonicalize(
        reward, "reward", obs, act, next_obs, infos,
        coverage_obs=coverage_obs, coverage_act=coverage_act,
        coverage_next_obs=coverage_next_obs, coverage_infos=coverage_infos,
        discount=discount, max_batch_bytes=max_batch_bytes,
    )
    return values


def _canonicalize(
    reward: RewardFn,
    name: str,
    obs: np.ndarray,
    act: np.ndarray,
    next_obs: np.ndarray,
    infos: Mapping[str, np.ndarray] | None,
    *,
    coverage_obs: np.ndarray,
    coverage_act: np.ndarray,
    coverage_next_obs: np.ndarray | None,
    coverage_infos: Mapping[str, np.ndarray] | None,
    discount: float,
    max_batch_bytes: int,
) -> tuple[np.ndarray, float]:
    """``canonicalize`` plus the largest |reward| evaluated (the scale for the constant test)."""
    _check_discount(discount)
    obs = _matrix("obs", obs)
    act = _matrix("act", act)
    next_obs = _matrix("next_obs", next_obs)
    n = obs.shape[0]
    if act.shape[0] != n or next_obs.shape != obs.shape:
        raise SymrewardError(
            f"canonicalize: obs {obs.shape}, act {act.shape} and next_obs {next_obs.shape} must "
            "have the same number of rows, and obs and next_obs the same shape"
        )
    infos = _columns("infos", infos, n)
    coverage_obs = _matrix("coverage_obs", coverage_obs)
    coverage_act = _matrix("coverage_act", coverage_act)
    coverage_next_obs = (
        coverage_obs if coverage_next_obs is None
        else _matrix("coverage_next_obs", coverage_next_obs)
    )
    m = coverage_act.shape[0]
    if m == 0 or coverage_obs.shape[0] == 0:
        raise SymrewardError("canonicalize: the coverage samples are empty")
    if coverage_next_obs.shape[0] != m:
        raise SymrewardError(
            f"canonicalize: coverage_next_obs has {coverage_next_obs.shape[0]} rows but "
            f"coverage_act has {m}; the (A, S') samples are paired row by row"
        )
    for key, arr in (("coverage_obs", coverage_obs), ("coverage_next_obs", coverage_next_obs)):
        if arr.shape[1] != obs.shape[1]:
            raise SymrewardError(
                f"canonicalize: {key} has {arr.shape[1]} columns but obs has {obs.shape[1]}"
            )
    if coverage_act.shape[1] != act.shape[1]:
        raise SymrewardError(
            f"canonicalize: coverage_act has {coverage_act.shape[1]} columns but act has "
            f"{act.shape[1]}"
        )
    coverage_infos = _columns("coverage_infos", coverage_infos, m)
    if set(coverage_infos) != set(infos):
        raise SymrewardError(
            f"canonicalize: infos has names {sorted(infos)} but coverage_infos has "
            f"{sorted(coverage_infos)}; a reward must see the same info names everywhere"
        )

    raw = _call(reward, name, obs, act, next_obs, infos)
    scale = float(np.max(np.abs(raw)))

    # Only distinct states need a mean: consecutive transitions share obs[t + 1] == next_obs[t],
    # so this roughly halves the dominant cost on trajectory data.
    states = np.concatenate((obs, next_obs, coverage_obs), axis=0)
    unique, inverse = np.unique(states, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    means, mean_scale = _mean_rewards(
        reward, name, unique, coverage_act, coverage_next_obs, coverage_infos, max_batch_bytes
    )
    scale = max(scale, mean_scale)
    per_state = means[inverse]
    mean_obs = per_state[:n]
    mean_next = per_state[n:2 * n]
    total = float(np.mean(per_state[2 * n:]))
    return raw + discount * mean_next - mean_obs - discount * total, scale


def _mean_rewards(
    reward: RewardFn,
    name: str,
    states: np.ndarray,
    act: np.ndarray,
    next_obs: np.ndarray,
    infos: dict[str, np.ndarray],
    max_batch_bytes: int,
) -> tuple[np.ndarray, float]:
    """``mean_j reward(states[i], act[j], next_obs[j], infos[j])`` for every row i, chunked.

    Returns the means and the largest |reward| evaluated.
    """
    m = act.shape[0]
    pair_bytes = (
        states.itemsize * states.shape[1]
        + act.itemsize * act.shape[1]
        + next_obs.itemsize * next_obs.shape[1]
        + 8 * (len(infos) + 1)
    )
    rows = int(min(states.shape[0], max(1, max_batch_bytes // (pair_bytes * m))))
    # Tiled once for the largest chunk and sliced for a shorter last one. Read-only, so a reward
    # that writes into its inputs fails loudly instead of corrupting the following chunks.
    act_tiled = _readonly(np.tile(act, (rows, 1)))
    next_tiled = _readonly(np.tile(next_obs, (rows, 1)))
    infos_tiled = {key: _readonly(np.tile(col, rows)) for key, col in infos.items()}
    means = np.empty(states.shape[0], dtype=np.float64)
    scale = 0.0
    for start in range(0, states.shape[0], rows):
        chunk = states[start:start + rows]
        k = chunk.shape[0] * m
        values = _call(
            reward, name, _readonly(np.repeat(chunk, m, axis=0)), act_tiled[:k],
            next_tiled[:k], {key: col[:k] for key, col in infos_tiled.items()},
        )
        scale = max(scale, float(np.max(np.abs(values))))
        means[start:start + chunk.shape[0]] = values.reshape(chunk.shape[0], m).mean(axis=1)
    return means, scale


# ---------------------------------------------------------------------------- EPIC


def epic_distance(
    reward_a: RewardFn,
    reward_b: RewardFn,
    dataset: Dataset,
    *,
    discount: float = 0.99,
    n_eval: int = 4096,
    n_mean: int = 1024,
    seed: int = 0,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> float:
    """The EPIC distance between two rewards, estimated from ``dataset`` alone; in [0, 1].

    0 means the rewards are equivalent up to positive scale, an additive constant and potential
    shaping (the same optimal policies in every MDP with these states and actions); 1 means one is,
    after canonicalisation, the negation of the other. Pass a held-out dataset to audit a learned
    reward on data it was not fitted to.

    Distributions, all from ``dataset``:

    * D_S (coverage of states): observations and next_observations pooled (2N rows).
    * D_A (coverage of actions): the actions.
    * Evaluation: the dataset's own transitions ``(s, a, s', info)``; all of them when
      ``n_eval >= N``, else ``n_eval`` drawn without replacement.

    ``n_mean`` samples each of S, A and S' are drawn independently (with replacement), once, and
    shared by both rewards. Infos: each drawn S' carries the info of the transition that *ended*
    in that state, i.e. info is treated as a function of the next state. A pooled
    ``next_observations[t]`` row takes ``infos[t]``, a pooled ``observations[t]`` row takes
    ``infos[t − 1]`` from the same episode; the first state of an episode was reached by no
    recorded transition, so it takes its own transition's info ``infos[t]`` (an approximation
    that touches one pooled row per episode). See ``canonicalize`` for the formula.

    The result is deterministic for a given ``seed``. Cost: about ``(distinct states in the
    evaluated transitions + n_mean) × n_mean`` reward evaluations per reward.

    Constant rewards: a reward whose canonical form is constant (a constant, or a pure shaping
    term) is equivalent to the zero reward. If both are, the distance is 0. If exactly one is,
    the correlation is undefined and a ``SymrewardError`` (a ``ValueError``) names it, because
    any number reported instead would be misread as a measurement.
    """
    _check_discount(discount)
    n_eval = _positive_int("n_eval", n_eval)
    n_mean = _positive_int("n_mean", n_mean)
    if n_eval < 2:
        raise SymrewardError(f"n_eval must be at least 2 to compute a correlation; got {n_eval}")
    n = dataset.n
    if n < 2:
        raise SymrewardError(f"{dataset.source}: EPIC needs at least 2 transitions; got {n}")

    _, shared = epic_inputs(dataset, n_eval=n_eval, n_mean=n_mean,
                            rng=np.random.default_rng(seed))
    canon_a, scale_a = _canonicalize(reward_a, "reward_a", **shared, discount=discount,
                                     max_batch_bytes=max_batch_bytes)
    canon_b, scale_b = _canonicalize(reward_b, "reward_b", **shared, discount=discount,
                                     max_batch_bytes=max_batch_bytes)
    const_a = is_constant(canon_a, scale_a)
    const_b = is_constant(canon_b, scale_b)
    if const_a and const_b:
        return 0.0
    if const_a or const_b:
        which = "reward_a" if const_a else "reward_b"
        raise SymrewardError(
            f"EPIC distance is undefined: {which} is equivalent to a constant on {dataset.source} "
            "(its canonical reward has no variance, e.g. it is a constant or a pure "
            "potential-shaping term), so it cannot be correlated with the other reward"
        )
    return pearson_distance(canon_a, canon_b)


def epic_inputs(dataset: Dataset, *, n_eval: int, n_mean: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, dict[str, object]]:
    """The evaluated rows of ``dataset`` and the keyword arguments of ``canonicalize`` (all but
    ``discount``), drawn from ``rng`` exactly as ``epic_distance`` draws them: ``n_eval`` rows
    without replacement (every row when ``n_eval >= N``), then ``n_mean`` samples each of S, A
    and S' with replacement. Shared by the other distances of ``symreward.audit``, so that
    for one seed they evaluate the transitions ``epic_distance`` evaluates, with its samples."""
    n = dataset.n
    rows = np.arange(n) if n_eval >= n else np.sort(rng.choice(n, size=n_eval, replace=False))
    pool_obs = np.concatenate((dataset.observations, dataset.next_observations), axis=0)
    pool_info_rows = _pool_info_rows(dataset)
    s_idx = rng.integers(2 * n, size=n_mean)
    a_idx = rng.integers(n, size=n_mean)
    sp_idx = rng.integers(2 * n, size=n_mean)
    sp_info_rows = pool_info_rows[sp_idx]
    shared = {
        "obs": dataset.observations[rows],
        "act": dataset.actions[rows],
        "next_obs": dataset.next_observations[rows],
        "infos": {key: col[rows] for key, col in dataset.infos.items()},
        "coverage_obs": pool_obs[s_idx],
        "coverage_act": dataset.actions[a_idx],
        "coverage_next_obs": pool_obs[sp_idx],
        "coverage_infos": {key: col[sp_info_rows] for key, col in dataset.infos.items()},
    }
    return rows, shared


def is_constant(canonical: np.ndarray, scale: float) -> bool:
    """Whether a canonical reward is constant up to the rounding noise canonicalisation leaves
    (a spread of at most ``_CONSTANT_RTOL`` times ``scale``, the largest |reward| evaluated)."""
    return bool(np.std(canonical) <= _CONSTANT_RTOL * scale)


def _pool_info_rows(dataset: Dataset) -> np.ndarray:
    """For each row of the pooled states ``[observations; next_observations]``, the dataset row
    whose info goes with that state when it is used as a next state (see ``epic_distance``)."""
    n = dataset.n
    own = np.arange(n, dtype=np.int64)
    previous = own - 1
    starts = dataset.episode_starts
    previous[starts] = starts
    return np.concatenate((previous, own))


# ---------------------------------------------------------------------------- helpers


def _call(
    reward: RewardFn,
    name: str,
    obs: np.ndarray,
    act: np.ndarray,
    next_obs: np.ndarray,
    infos: dict[str, np.ndarray],
) -> np.ndarray:
    """Evaluate ``reward`` and insist on one finite float per transition, naming the reward."""
    out = np.asarray(reward(obs, act, next_obs, dict(infos)), dtype=np.float64)
    k = obs.shape[0]
    if out.shape != (k,):
        raise SymrewardError(
            f"{name} returned shape {out.shape} for a batch of {k} transitions; expected ({k},)"
        )
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise SymrewardError(
            f"{name} returned {out[i]} for obs={obs[i].tolist()}, act={act[i].tolist()}, "
            f"next_obs={next_obs[i].tolist()}; the distances evaluate rewards on synthetic "
            "transitions (states, actions and next states of the data combined), so they must be "
            "finite there"
        )
    return out


def _matrix(key: str, value: np.ndarray) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise SymrewardError(
            f"canonicalize: {key} must be a 2-D numeric array; got shape {arr.shape}, "
            f"dtype {arr.dtype}"
        )
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise SymrewardError(f"canonicalize: {key} contains NaN or inf")
    return arr


def _columns(key: str, value: Mapping[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, col in (value or {}).items():
        arr = np.asarray(col, dtype=np.float64)
        if arr.shape != (n,):
            raise SymrewardError(
                f"canonicalize: {key}[{name!r}] has shape {arr.shape}; expected ({n},)"
            )
        out[name] = arr
    return out


def _check_discount(discount: float) -> None:
    ok = isinstance(discount, numbers.Real) and not isinstance(discount, bool)
    if not (ok and 0.0 <= float(discount) <= 1.0):
        raise SymrewardError(f"discount must be a number in [0, 1]; got {discount!r}")


def _positive_int(key: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SymrewardError(f"{key} must be a positive integer; got {value!r}")
    return int(value)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr
