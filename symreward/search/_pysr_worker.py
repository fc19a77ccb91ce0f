"""Run one PySR search in a process of its own: ``python -m symreward.search._pysr_worker DIR``.

PySR drives Julia through juliacall, and Julia's LLVM clashes with numba's in one process, so
symreward itself never imports pysr (and this module imports nothing of symreward's, so numba
never loads here). ``symreward.search.pysr`` writes into ``DIR``:

* ``X.npy`` (rows × features), ``y.npy`` and, when the loss needs them, ``weights.npy``;
* ``config.json``: ``{"options": keyword arguments of PySRRegressor, "variable_names": [...]}``.

PySR writes its hall of fame to ``<options.output_directory>/<options.run_id>/hall_of_fame.csv``.
Exit status ``UNAVAILABLE`` means PySR or Julia could not start, so nothing was searched.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

UNAVAILABLE = 3


def main(argv: list[str]) -> int:
    folder = Path(argv[1])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    X = np.load(folder / "X.npy")
    y = np.load(folder / "y.npy")
    weights_path = folder / "weights.npy"
    weights = np.load(weights_path) if weights_path.exists() else None
    try:
        from pysr import PySRRegressor
    except Exception as exc:  # any failure to start Julia or its packages, whatever its type
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return UNAVAILABLE
    model = PySRRegressor(**config["options"])
    model.fit(X, y, weights=weights, variable_names=config["variable_names"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
