"""The rows of a dataset an objective learns from, as a dataset of their own.

The learner featurises, builds the candidate columns and searches on this dataset, so its
memory and time are set by the supervision and not by the size of the log it came with:

* ``preferences`` and ``rankings`` read only the transitions inside labelled segments
  (``symreward.data.subset.labelled_rows``). Learning on them alone is learning on the whole
  dataset, exactly: the objective's loss, its cross-validation units and the library's knots
  (quantiles of the features over the rows learned from) are those of a dataset built of just
  those rows, whatever surrounds them.
* ``demonstrations`` average the loss over the expert rows and, apart, over the unlabeled
  rows. Every expert row is kept; where there are more than ``max_unlabeled`` unlabeled rows,
  a uniform sample of ``max_unlabeled`` of them is drawn without replacement (seeded, over
  their global row numbers, so the sample is the same however the data are stored or
  chunked). The unlabeled average is then an unbiased estimate of the full one, with a
  standard error of 1/sqrt(max_unlabeled) of its per-row spread (0.3% at the default 100,000),
  small beside the expert average's own 1/sqrt(experts) unless the experts number tens of
  thousands: raise the cap where they do. Measured (``benchmarks/unlabeled_cap.py``: 10,000
  expert and 300,000 unlabeled rows, a planted logit; three seeds per cap), the EPIC distance
  to the truth is 0.0008-0.0073 at a cap of 10,000, 0.0000-0.0053 at 30,000, 0.0022-0.0043 at
  100,000 and 0.0032 with every row, at 0.67 GiB and 1-2 min against 1.39 GiB and 4 min. Below
  the cap nothing is sampled and the fit is the one on every row.
* ``rewards`` read every row: the dataset is learned from as it is (a lazy one chunk by chunk,
  through per-fold moments: ``symreward.chunked``).

A dataset too large for memory (``symreward.data.lazy``) is reduced by the same rules: any
object with ``n``, ``source``, ``preferences``, ``rankings``, ``expert`` (an array-like, read
once), ``take(rows)`` (the ``Dataset`` of those rows, as ``subset.take``) and ``digest()`` (as
``dataset_digest``) goes through ``reduce_dataset`` like an in-memory ``Dataset``; the rows
learned from are gathered into memory (for demonstrations: every expert row, so expert rows
beyond what memory holds must be sampled before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from symreward import validation
from symreward.data import Dataset
from symreward.data.dataset import dataset_digest
from symreward.data.subset import labelled_rows, take

__all__ = ["MAX_UNLABELED", "Reduction", "reduce_dataset", "unlabeled_sample"]

#: Default cap on the unlabeled rows a demonstrations fit reads (module doc): the fit's time
#: and memory grow with the rows it reads, and beyond some tens of thousands of unlabeled rows
#: the fit is limited by the expert rows, not by them.
MAX_UNLABELED = 100_000
# Mixed into the seed so the sample draws a stream of its own, apart from the folds' draws.
_SAMPLE_STREAM = 0x5A3B1E


@dataclass(frozen=True)
class Reduction:
    """The dataset learned from and what provenance records of the input.

    ``rows[i]`` is the input's row of the learned dataset's row ``i`` (``None``: every row of
    the input, in order); ``data`` is the provenance's ``data`` table: the input's ``source``,
    ``sha256`` and ``transitions``, and the rows learned from (``labelled_transitions``, or
    ``unlabeled_transitions`` and ``unlabeled_sampled`` where the cap bites).
    """

    dataset: Dataset
    rows: np.ndarray | None
    data: dict[str, Any]

    @property
    def summary(self) -> str:
        """What was kept, in a line for progress messages ("" where every row is)."""
        if self.rows is None:
            return ""
        kept = (f"every expert one and {self.data['unlabeled_sampled']} of the "
                f"{self.data['unlabeled_transitions']} unlabeled ones, drawn at random"
                if "unlabeled_sampled" in self.data else "those inside labelled segments")
        return f"learning from {len(self.rows)} of {self.data['transitions']} transitions: {kept}"

    def input_row(self, row: int) -> int:
        """The input's row number of the learned dataset's ``row`` (for messages)."""
        return int(row if self.rows is None else self.rows[row])


def unlabeled_sample(expert: np.ndarray, max_unlabeled: int, seed: int) -> np.ndarray | None:
    """The sorted rows a demonstrations fit reads: every expert row and ``max_unlabeled``
    unlabeled rows drawn uniformly without replacement; ``None`` where there are no more than
    ``max_unlabeled`` unlabeled rows (every row is read). The draw depends only on the global
    expert mask, the cap and the seed."""
    expert = np.asarray(expert, dtype=bool)
    unlabeled = np.flatnonzero(~expert)
    if len(unlabeled) <= max_unlabeled:
        return None
    generator = np.random.default_rng([_SAMPLE_STREAM, seed])
    chosen = generator.choice(len(unlabeled), size=max_unlabeled, replace=False, shuffle=False)
    return np.union1d(np.flatnonzero(expert), unlabeled[chosen])


def reduce_dataset(objective: str, dataset: Any, *, max_unlabeled: int = MAX_UNLABELED,
                   seed: int = 0) -> Reduction:
    """``dataset`` reduced to the rows ``objective`` learns from (module doc).

    Where the supervision the objective needs is missing or holds nothing to learn (no
    preferences, no expert row, only expert rows), nothing is reduced: the objective then says
    what is wrong, naming the input.
    """
    validation.whole("max_unlabeled", max_unlabeled, 1)
    in_memory = isinstance(dataset, Dataset)
    data: dict[str, Any] = {
        "source": dataset.source,
        "sha256": dataset_digest(dataset) if in_memory else dataset.digest(),
        "transitions": int(dataset.n)}
    rows: np.ndarray | None = None
    if objective in ("preferences", "rankings"):
        supervision = getattr(dataset, objective)
        if supervision is not None and len(supervision):
            rows = labelled_rows(dataset)
            data["labelled_transitions"] = len(rows)
    elif objective == "demonstrations" and dataset.expert is not None:
        expert = np.asarray(dataset.expert, dtype=bool)
        if expert.any() and not expert.all():
            rows = unlabeled_sample(expert, max_unlabeled, seed)
            if rows is not None:
                data["unlabeled_transitions"] = int(len(expert) - expert.sum())
                data["unlabeled_sampled"] = max_unlabeled
            elif not in_memory:  # every row is learned from: gathered into memory
                rows = np.arange(dataset.n)
    if rows is None or (in_memory and len(rows) == dataset.n):
        return Reduction(dataset, None, data)
    # The reduced dataset keeps the input's name, so every later message names the input.
    reduced = (take(dataset, rows, source=dataset.source) if in_memory
               else dataset.take(rows, source=dataset.source))
    return Reduction(reduced, rows, data)
