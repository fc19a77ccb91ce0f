"""Which terms make the reward, which decide the preference labels, and which labels the reward
gets most wrong.

Three questions a person asks of a learned reward, answered from the data:

* **Variance share** — how much of the reward's variation over the data each term carries. The
  reward is ``R = Σ_i t_i``; its variance splits exactly as
  ``var(R) = Σ_i cov(t_i, R)``, so ``share_i = cov(t_i, R) / var(R)`` sums to 1 whatever the
  terms' correlations. A share is the slope of ``t_i`` on ``R``: how much of a unit change of the
  reward comes, on average, through that term. Correlated terms are treated honestly rather
  than forced into [0, 1]: two terms that cancel each other (``+3x`` and ``-2x``) get shares
  above 1 and below 0, which is what they do; a negative share is a term that works *against*
  the reward's variation over the data (it moves opposite to the total). Independent terms get
  ``var(t_i) / var(R)``, the textbook split.

* **Pair share** — how much each term contributes to the reward's decisions on the data's
  preference pairs. Under Bradley–Terry a pair is decided by the logit ``Δ = R(a) − R(b)``
  (returns over the two segments); with ``Δ = Σ_i Δ_i`` the same split, taken about zero,
  gives ``share_i = Σ_p Δ_i,p Δ_p / Σ_p Δ_p²``. About zero rather than about the mean because
  which segment of a pair is called ``a`` is arbitrary: swapping ``a`` and ``b`` negates both
  ``Δ_i,p`` and ``Δ_p``, so the products, and the shares, do not change (a centred covariance
  would depend on that naming). The denominator is positive whenever the reward tells any
  pair apart. A term with a large share is the one the labels' predictions rest on; a
  negative share is a term that pushes against the reward's overall decisions. (The share of
  ``Σ_p |Δ_i,p|`` was the alternative; it cannot see terms that cancel each other within a
  pair, and does not sum to the logit.)

* **Worst pairs** — the pairs whose label is least likely under the preference model the
  reward was fitted with: ``P(a ≻ b) = ε/2 + (1 − ε) σ(Δ)`` (``ε`` the label-noise
  probability, ``Δ`` with the segment discount; as ``objectives.PreferenceObjective``). They
  are ranked by the excess loss ``KL(y ‖ q) = y log(y/q) + (1−y) log((1−y)/(1−q))``: the
  cross-entropy minus the label's own entropy. For hard labels (0 or 1) this is the negative
  log-likelihood of the label, so the ranking is by likelihood; for a soft label (0.5 = "a tie")
  it is 0 where the model predicts the label exactly, so a tie predicted as a tie is not
  ranked above a confident label predicted slightly wrongly. These are the labels a person
  should look at first: a mislabelled pair, or a behaviour the reward misses.

Pairs that compare a segment with itself (no reward can tell them apart) and transitions or
pairs where a term is not finite are left out, and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symreward.data import Dataset, Preferences
from symreward.errors import SymrewardError
from symreward.objectives import segment_matrix

__all__ = ["Attribution", "PairPredictions", "attribute", "calibration", "pair_predictions",
           "pair_shares", "variance_shares"]

#: Pairs listed as the worst by default.
WORST_PAIRS = 10
#: Bins of the calibration of predicted against labelled preference probabilities.
CALIBRATION_BINS = 10


def variance_shares(columns: np.ndarray) -> np.ndarray | None:
    """``cov(t_i, R) / var(R)`` for each column ``t_i`` of ``columns`` (N, K), ``R`` the row
    sums; they sum to 1. ``None`` when the reward does not vary over the rows (nothing to
    split). Rows must be finite."""
    columns = _finite_matrix("columns", columns)
    if len(columns) < 2:
        return None
    return _shares(columns - columns.mean(axis=0))


def pair_shares(differences: np.ndarray) -> np.ndarray | None:
    """``Σ_p Δ_i,p Δ_p / Σ_p Δ_p²`` for each column ``Δ_i`` of ``differences`` (P, K), the
    per-term return differences of the pairs, ``Δ_p`` their row sums; they sum to 1 and do not
    depend on which segment of a pair comes first. ``None`` when every ``Δ_p`` is 0."""
    return _shares(_finite_matrix("differences", differences))


def _shares(centred: np.ndarray) -> np.ndarray | None:
    """The projections of the columns on their sum, over the sum's squared norm."""
    if centred.size == 0:
        return None
    # Scaled by the largest magnitude, so squares of large rewards do not overflow.
    peak = float(np.max(np.abs(centred)))
    if peak == 0.0:
        return None
    scaled = centred / peak
    total = scaled.sum(axis=1)
    norm = float(total @ total)
    if norm == 0.0:
        return None
    return (scaled.T @ total) / norm


@dataclass(frozen=True)
class PairPredictions:
    """The preference model's predictions on the data's preference pairs.

    ``index`` holds the pairs used (rows of ``pref_a``/``pref_b``/``pref_label``): those that
    compare different transitions and touch no non-finite term value. The arrays are aligned
    with it.
    """

    index: np.ndarray
    term_differences: np.ndarray
    difference: np.ndarray
    label: np.ndarray
    predicted: np.ndarray
    excess_loss: np.ndarray
    cross_entropy: np.ndarray
    pairs: int
    uninformative: int
    non_finite: int
    discount: float
    noise: float


def pair_predictions(columns: np.ndarray, dataset: Dataset, *, discount: float = 1.0,
                     noise: float = 0.0) -> PairPredictions | None:
    """The Bradley–Terry predictions of the reward whose term columns are ``columns`` (N, K)
    on the preference pairs of ``dataset``; ``None`` when it has none.

    ``discount`` weighs a segment's steps (``discount**k``) and ``noise`` is the label-noise
    probability ``ε``, as in the preference objective (the learner records both in
    ``provenance.options``).
    """
    prefs = dataset.preferences
    if prefs is None or len(prefs) == 0:
        return None
    if not 0.0 < discount <= 1.0:
        raise SymrewardError(f"discount must be in (0, 1]; got {discount!r}")
    if not 0.0 <= noise < 1.0:
        raise SymrewardError(f"noise must be in [0, 1); got {noise!r}")
    columns = np.asarray(columns, dtype=np.float64)
    if columns.ndim != 2 or len(columns) != dataset.n:
        raise SymrewardError(f"columns must have shape ({dataset.n}, K); got {columns.shape}")
    n = dataset.n
    difference = (segment_matrix(prefs.a, n, discount)
                  - segment_matrix(prefs.b, n, discount)).tocsr()
    difference.eliminate_zeros()
    informative = np.diff(difference.indptr) > 0
    bad_rows = ~np.all(np.isfinite(columns), axis=1)
    touches_bad = (abs(difference) @ bad_rows.astype(np.float64)) > 0
    safe = np.where(bad_rows[:, None], 0.0, columns)  # the excluded pairs never read these rows
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.asarray(difference @ safe)
        total = terms.sum(axis=1)
    # A pair whose returns overflow is as unusable as one that reads a non-finite value.
    touches_bad |= ~(np.all(np.isfinite(terms), axis=1) & np.isfinite(total))
    used = np.flatnonzero(informative & ~touches_bad)
    terms, total = terms[used], total[used]
    label = np.asarray(prefs.label, dtype=np.float64)[used]
    log_q, log_not_q = _log_probabilities(total, noise)
    with np.errstate(invalid="ignore", divide="ignore"):
        own = _xlogx(label) + _xlogx(1.0 - label)
        cross = -(_times_log(label, log_q) + _times_log(1.0 - label, log_not_q))
    return PairPredictions(
        index=used, term_differences=terms, difference=total, label=label,
        predicted=np.exp(log_q), excess_loss=np.maximum(cross + own, 0.0),
        cross_entropy=cross, pairs=len(prefs),
        uninformative=int(np.count_nonzero(~informative)),
        non_finite=int(np.count_nonzero(informative & touches_bad)),
        discount=float(discount), noise=float(noise))


def _log_probabilities(logit: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``log q`` and ``log(1 − q)`` for ``q = ε/2 + (1 − ε) σ(logit)``, without cancellation."""
    log_sigma = -np.logaddexp(0.0, -logit)
    log_not_sigma = -np.logaddexp(0.0, logit)
    if noise == 0.0:
        return log_sigma, log_not_sigma
    floor, scale = np.log(noise / 2.0), np.log1p(-noise)
    return np.logaddexp(floor, scale + log_sigma), np.logaddexp(floor, scale + log_not_sigma)


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def _times_log(weight: np.ndarray, log_value: np.ndarray) -> np.ndarray:
    """``weight * log_value`` with ``0 * -inf = 0`` (a label of 0 does not read ``log q``)."""
    return np.where(weight > 0, weight * log_value, 0.0)


@dataclass(frozen=True)
class WorstPair:
    """A preference pair the reward gets wrong, with what each term did to it."""

    pair: int
    segments: tuple[tuple[int, int], tuple[int, int]]
    label: float
    predicted: float
    excess_loss: float
    return_difference: float
    term_differences: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {"pair": self.pair, "segments": [list(s) for s in self.segments],
                "label": self.label, "predicted": self.predicted,
                "excess_loss": self.excess_loss, "return_difference": self.return_difference,
                "term_differences": dict(self.term_differences)}


@dataclass(frozen=True)
class Attribution:
    """Term shares and the worst pairs (see the module's docstring)."""

    variance_share: dict[str, float | None]
    pair_share: dict[str, float | None] | None
    worst_pairs: list[WorstPair]
    transitions: int
    excluded_transitions: int
    pairs: int | None
    excluded_pairs: int | None

    def as_dict(self) -> dict[str, object]:
        return {"variance_share": dict(self.variance_share),
                "pair_share": None if self.pair_share is None else dict(self.pair_share),
                "worst_pairs": [p.as_dict() for p in self.worst_pairs],
                "transitions": self.transitions,
                "excluded_transitions": self.excluded_transitions,
                "pairs": self.pairs, "excluded_pairs": self.excluded_pairs}


def attribute(columns: np.ndarray, term_names: Sequence[str],
              predictions: PairPredictions | None = None, dataset: Dataset | None = None, *,
              worst: int = WORST_PAIRS) -> Attribution:
    """Variance shares of the term ``columns`` (N, K) over the transitions, and, given the
    pair ``predictions`` (``pair_predictions``) and their ``dataset``, pair shares and the
    ``worst`` pairs, worst first (ties by pair index)."""
    columns = np.asarray(columns, dtype=np.float64)
    names = list(term_names)
    if columns.ndim != 2 or columns.shape[1] != len(names):
        raise SymrewardError(f"columns have shape {columns.shape} but there are {len(names)} "
                             "term names")
    finite = np.all(np.isfinite(columns), axis=1)
    shares = variance_shares(columns[finite])
    pair_share = worst_pairs = None
    if predictions is not None:
        if dataset is None or dataset.preferences is None:
            raise SymrewardError("attribute: pair predictions need the dataset they come from")
        split = pair_shares(predictions.term_differences)
        pair_share = _named(names, split)
        worst_pairs = _worst(predictions, dataset.preferences, names, worst)
    return Attribution(
        variance_share=_named(names, shares), pair_share=pair_share,
        worst_pairs=worst_pairs or [], transitions=int(np.count_nonzero(finite)),
        excluded_transitions=int(np.count_nonzero(~finite)),
        pairs=None if predictions is None else len(predictions.index),
        excluded_pairs=(None if predictions is None
                        else predictions.uninformative + predictions.non_finite))


def _named(names: list[str], values: np.ndarray | None) -> dict[str, float | None]:
    if values is None:
        return dict.fromkeys(names)
    return {name: float(v) for name, v in zip(names, values, strict=True)}


def _worst(predictions: PairPredictions, prefs: Preferences, names: list[str], count: int
           ) -> list[WorstPair]:
    if count < 0:
        raise SymrewardError(f"worst must be >= 0; got {count!r}")
    # Stable on the negated loss: equal losses keep the pairs' order, so the list is
    # deterministic.
    order = np.argsort(-predictions.excess_loss, kind="stable")[:count]
    out = []
    for k in order:
        pair = int(predictions.index[k])
        out.append(WorstPair(
            pair=pair,
            segments=(tuple(int(v) for v in prefs.a[pair]), tuple(int(v) for v in prefs.b[pair])),
            label=float(predictions.label[k]), predicted=float(predictions.predicted[k]),
            excess_loss=float(predictions.excess_loss[k]),
            return_difference=float(predictions.difference[k]),
            term_differences={name: float(v) for name, v in
                              zip(names, predictions.term_differences[k], strict=True)}))
    return out


def calibration(predictions: PairPredictions, bins: int = CALIBRATION_BINS
                ) -> dict[str, object]:
    """How well the predicted preference probabilities match the labels: the mean
    cross-entropy (the preference objective's loss), the accuracy on pairs whose label is not a
    tie (as the learner counts it), and, in ``bins`` equal-width bins of the predicted
    probability, the pairs in each, their mean prediction and their mean label (the empirical
    probability). Empty bins are left out."""
    if bins < 1:
        raise SymrewardError(f"bins must be >= 1; got {bins!r}")
    predicted, label = predictions.predicted, predictions.label
    decided = label != 0.5
    accuracy = (float(np.mean((predictions.difference[decided] > 0) == (label[decided] > 0.5)))
                if decided.any() else None)
    which = np.minimum((predicted * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        if members.any():
            rows.append({"lo": b / bins, "hi": (b + 1) / bins,
                         "pairs": int(np.count_nonzero(members)),
                         "predicted": float(predicted[members].mean()),
                         "empirical": float(label[members].mean())})
    return {"pairs": len(label),
            "log_loss": float(predictions.cross_entropy.mean()) if len(label) else None,
            "accuracy": accuracy, "bins": rows,
            "discount": predictions.discount, "noise": predictions.noise}


def _finite_matrix(key: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise SymrewardError(f"{key} must be a 2-D array; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise SymrewardError(f"{key} contains NaN or inf")
    return array
