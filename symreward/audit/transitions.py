"""The data's own transitions as a model of where a state can go, for the distances that evaluate
a reward only on transitions the data can reach (DARD, STARC's value-adjusted canonicalisation).

EPIC evaluates rewards on transitions ``(s, A, S')`` that combine any state, action and next
state of the data, most of which the dynamics never produce; a learned reward is least reliable
there (Wulfe et al. 2022, "Dynamics-Aware Comparison of Learned Reward Functions", ICLR 2022).
DARD replaces the independent ``S'`` by draws from a transition model ``T(S' | s, A)``. Offline
there is no model but the data, so here the model is the data itself:

    from a state x, the successors are the recorded transitions ``(act[j], next_obs[j],
    infos[j])`` of the ``k`` recorded rows j whose observations are nearest x

(nearest in the observation space standardised by the mean and standard deviation of the data's
observations and next observations pooled; a dimension with no spread keeps its scale). The
action goes with its recorded successor, so every ``(x, A, S')`` is a recorded transition with its
first state moved to a nearby x, the "transitions the data can reach"; the action distribution is
the data's actions near x (the behaviour policy's), which DARD's ``A ~ D_A`` becomes where the
model only knows the recorded actions. A recorded state finds its own row among its neighbours
when that row is in the pool, which then counts 1/k of its mean.

``k = 16`` (``DEFAULT_NEIGHBOURS``): means over fewer successors are dominated by one transition
(the state's own), more reach further from x. The rows searched are ``n_pool`` (16384) drawn
without replacement from the data (all of them in smaller data): the exact search costs about
0.2 ms a state at that size in 17 dimensions, and a distance needs some 10 000 to 25 000 states.

``TransitionGraph`` holds, for one set of evaluated transitions, the states whose successors are
needed (their first and next states and, for the value function, every successor of the pool,
so that the states and successors close into a finite Markov chain) and their successors.
Episode ends are ignored, as EPIC ignores them: the distances are defined for infinite-horizon
problems, so a terminal state goes on to the successors of its neighbours like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from scipy.spatial import cKDTree

from symreward.audit.epic import RewardFn, _call
from symreward.data.dataset import Dataset
from symreward.errors import SymrewardError

__all__ = ["DEFAULT_NEIGHBOURS", "DEFAULT_POOL", "TransitionGraph"]

DEFAULT_NEIGHBOURS = 16
DEFAULT_POOL = 16384

#: The value function's linear solve stops at this residual relative to its right-hand side;
#: the canonical rewards then differ from the exact ones by about 100x this (the condition of
#: ``I - γP`` at γ = 0.99), far below what a distance reports.
_SOLVE_RTOL = 1e-13


class TransitionGraph:
    """The recorded successors of the states of ``rows`` (transitions of ``dataset``).

    Parameters
    ----------
    dataset : Dataset
        The data whose transitions are the model.
    rows : ndarray of int
        The evaluated transitions (dataset rows); their first and next states are nodes.
    neighbours : int
        ``k``, the successors of a state.
    n_pool : int
        How many rows are searched for neighbours (drawn from ``rng`` when the data hold more).
    closed : bool
        Also make a node of every pool row's next state, so that every successor of a node is a
        node (needed by ``values``; DARD needs only the evaluated states).
    rng : numpy.random.Generator
        Draws the pool.

    Attributes
    ----------
    nodes : ndarray (n_nodes, obs_dim)
        The distinct states.
    neighbour_rows : ndarray (n_nodes, k) of int
        For each node, the dataset rows of its successors, nearest first.
    first_node, next_node : ndarray (len(rows),) of int
        The node of each evaluated transition's first and next state.
    successor_node : ndarray (n_nodes, k) of int or None
        The node of each successor's next state (``closed`` graphs only).
    """

    def __init__(self, dataset: Dataset, rows: np.ndarray, *, neighbours: int, n_pool: int,
                 closed: bool, rng: np.random.Generator):
        n = dataset.n
        if neighbours < 1:
            raise SymrewardError(f"neighbours must be a positive integer; got {neighbours!r}")
        if n_pool < neighbours:
            raise SymrewardError(f"n_pool ({n_pool}) must be at least neighbours ({neighbours})")
        if n < neighbours:
            raise SymrewardError(f"{dataset.source}: {n} transitions are fewer than the "
                                 f"{neighbours} neighbours asked for")
        self.dataset = dataset
        self.k = neighbours
        self.pool_rows = (np.arange(n) if n <= n_pool
                          else np.sort(rng.choice(n, size=n_pool, replace=False)))
        pooled = np.concatenate((dataset.observations, dataset.next_observations), axis=0)
        self._centre = pooled.mean(axis=0)
        spread = pooled.std(axis=0)
        self._scale = np.where(spread > 0, spread, 1.0)
        self._tree = cKDTree(self._standardise(dataset.observations[self.pool_rows]))

        m = len(rows)
        parts = [dataset.observations[rows], dataset.next_observations[rows]]
        if closed:
            parts.append(dataset.next_observations[self.pool_rows])
        states = np.concatenate(parts, axis=0)
        self.nodes, inverse = np.unique(states, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        self.first_node = inverse[:m]
        self.next_node = inverse[m:2 * m]
        positions = self._nearest(self.nodes)
        self.neighbour_rows = self.pool_rows[positions]
        self.successor_node = inverse[2 * m:][positions] if closed else None

    @property
    def n_nodes(self) -> int:
        return self.nodes.shape[0]

    def _standardise(self, states: np.ndarray) -> np.ndarray:
        return (np.asarray(states, dtype=np.float64) - self._centre) / self._scale

    def _nearest(self, states: np.ndarray) -> np.ndarray:
        """Pool positions of the ``k`` rows nearest each state, nearest first, shape (m, k)."""
        _, positions = self._tree.query(self._standardise(states), k=self.k, workers=-1)
        return np.asarray(positions, dtype=np.int64).reshape(len(states), self.k)

    # -------------------------------------------------------------------- reward means

    def state_means(self, reward: RewardFn, name: str, max_batch_bytes: int
                    ) -> tuple[np.ndarray, float]:
        """``G(x) = mean_j R(x, act[j], next_obs[j], infos[j])`` over the successors j of every
        node x, and the largest |reward| evaluated."""
        data = self.dataset
        k = self.k

        def build(start: int, stop: int) -> tuple[np.ndarray, ...]:
            rows = self.neighbour_rows[start:stop].reshape(-1)
            return (np.repeat(self.nodes[start:stop], k, axis=0), data.actions[rows],
                    data.next_observations[rows], rows)

        return self._means(reward, name, self.n_nodes, build, max_batch_bytes)

    def successor_means(self, reward: RewardFn, name: str, max_batch_bytes: int
                        ) -> tuple[np.ndarray, float]:
        """DARD's last term for each evaluated transition ``(s, a, s')``:
        ``H = mean_j R(S'_j, A''_j, S''_j)`` with ``S'_j`` the j-th successor of s and
        ``(A''_j, S''_j)`` the j-th of s' (paired by rank: the two are drawn independently, so
        pairing them gives k unbiased draws of the product), and the largest |reward|."""
        data = self.dataset
        first = self.neighbour_rows[self.first_node]
        second = self.neighbour_rows[self.next_node]

        def build(start: int, stop: int) -> tuple[np.ndarray, ...]:
            rows = second[start:stop].reshape(-1)
            return (data.next_observations[first[start:stop].reshape(-1)], data.actions[rows],
                    data.next_observations[rows], rows)

        return self._means(reward, name, len(self.first_node), build, max_batch_bytes)

    def _means(self, reward: RewardFn, name: str, count: int,
               build: Callable[[int, int], tuple[np.ndarray, ...]], max_batch_bytes: int
               ) -> tuple[np.ndarray, float]:
        data = self.dataset
        k = self.k
        row_bytes = 8 * (2 * data.obs_dim + data.act_dim + len(data.infos) + 1)
        chunk = int(max(1, max_batch_bytes // (row_bytes * k)))
        means = np.empty(count, dtype=np.float64)
        scale = 0.0
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            obs, act, next_obs, info_rows = build(start, stop)
            infos: Mapping[str, np.ndarray] = {key: col[info_rows]
                                               for key, col in data.infos.items()}
            values = _call(reward, name, obs, act, next_obs, dict(infos))
            scale = max(scale, float(np.max(np.abs(values))))
            means[start:stop] = values.reshape(stop - start, k).mean(axis=1)
        return means, scale

    # -------------------------------------------------------------------- value function

    def values(self, means: np.ndarray, discount: float) -> tuple[float, np.ndarray]:
        """The value of every node under the chain, ``V = G + γ P V``, with ``P`` moving from a
        node to each of its successors' next states with probability 1/k and ``G`` the
        ``state_means`` of a reward. Needs a ``closed`` graph and ``discount < 1``.

        Returned as ``(level, rest)`` with ``V = level / (1 − γ) + rest``: ``level`` is the mean
        of ``G``, whose value is exact (every row of P sums to 1), and ``rest`` solves the
        equation for ``G − level`` (``_solve``). A canonical reward ``R − V(s) + γV(s')`` is
        then ``(R − level) − rest(s) + γ rest(s')``, which never forms ``level / (1 − γ)``:
        for a reward with a large offset that term is 100 times the offset at γ = 0.99, and its
        rounding would swamp a small reward's shape."""
        if self.successor_node is None:
            raise SymrewardError("the value function needs a closed transition graph")
        if not discount < 1.0:
            raise SymrewardError(
                f"the value-adjusted canonicalisation needs discount < 1 (the values of an "
                f"undiscounted chain diverge); got {discount!r}")
        n_nodes, k = self.successor_node.shape
        chain = scipy.sparse.csr_matrix(
            (np.full(n_nodes * k, 1.0 / k), self.successor_node.reshape(-1),
             np.arange(0, n_nodes * k + 1, k)), shape=(n_nodes, n_nodes))
        chain.sum_duplicates()
        system = scipy.sparse.identity(n_nodes, format="csr") - discount * chain
        level = float(np.mean(means))
        return level, _solve(system, chain, discount, means - level)


def _solve(system: scipy.sparse.csr_matrix, chain: scipy.sparse.csr_matrix, discount: float,
           target: np.ndarray) -> np.ndarray:
    """``x`` with ``(I − γP) x = target``: BiCGSTAB to a residual of ``_SOLVE_RTOL``, and where
    that fails to converge value iteration to the same tolerance (its error shrinks by γ a
    sweep, so it always gets there). Both are deterministic."""
    tolerance = np.linalg.norm(target) * _SOLVE_RTOL
    if tolerance == 0.0:
        return np.zeros_like(target)
    solution, info = scipy.sparse.linalg.bicgstab(system, target, rtol=_SOLVE_RTOL, atol=0.0,
                                                  maxiter=10 * system.shape[0])
    if info == 0 and np.linalg.norm(system @ solution - target) <= 10 * tolerance:
        return solution
    solution = target.copy()
    while True:
        updated = target + discount * (chain @ solution)
        if np.linalg.norm(updated - solution) <= tolerance * (1.0 - discount):
            return updated
        solution = updated
