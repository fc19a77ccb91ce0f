"""Where dask work runs: ``scheduler(spec)``, the context behind every ``--scheduler`` option.

Only work on dask arrays (a lazy dataset's chunks, shards written in parallel) is scheduled
here; in-memory work runs as it always does, on numba's threads, whatever the spec. dask and
distributed are imported only when a spec asks for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from symreward.errors import OptionError, SymrewardError

__all__ = ["CONNECT_TIMEOUT", "LOCAL_SCHEDULERS", "import_dask", "scheduler"]

#: The schedulers of one machine, by the names dask gives them.
LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
#: Seconds to wait for a ``dask.distributed`` scheduler before giving up on its address.
CONNECT_TIMEOUT = 10.0

_CHOICES = ("threads, processes, synchronous, or a dask.distributed scheduler's address "
            "(tcp://host:port)")


def import_dask(what: str) -> Any:
    """The ``dask`` package with ``dask.array`` loaded, or a ``SymrewardError`` saying what
    needs it and how to install it."""
    try:
        import dask
        import dask.array  # the arrays every caller builds
    except ImportError as exc:
        raise SymrewardError(f"{what} needs dask: install symreward[dask]") from exc
    return dask


@contextlib.contextmanager
def scheduler(spec: str | None, *, timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """Run the dask work inside the block on the scheduler ``spec`` names.

    ``None`` leaves dask's default as it is (its threads, or a ``distributed.Client`` the
    caller made the default); ``"threads"``, ``"processes"`` (one pool of processes for the
    whole block) and ``"synchronous"`` are dask's schedulers of one machine; anything else is
    the address of a ``dask.distributed`` scheduler (``tcp://10.0.0.5:8786``), to which a
    ``Client`` connects for the block and which it closes after. Yields that client, else
    None.

    Raises ``OptionError`` (option ``scheduler``) for a name that is none of these, an address
    that cannot be parsed, or a scheduler not reached within ``timeout`` seconds, with the
    reason; ``SymrewardError`` when dask (or, for an address, distributed) is not installed.
    """
    if spec is None:
        yield None
        return
    if not isinstance(spec, str) or not spec.strip():
        raise OptionError("scheduler", spec, f"must be {_CHOICES}")
    if spec in LOCAL_SCHEDULERS:
        dask = import_dask(f"--scheduler {spec}")
        if spec != "processes":
            with dask.config.set(scheduler=spec):
                yield None
            return
        # One pool of processes for the block: dask's own starts a pool for every computation,
        # and a command computes several (a learner's expert mask, then its rows).
        from concurrent.futures import ProcessPoolExecutor

        from dask.multiprocessing import get_context, initialize_worker_process

        with ProcessPoolExecutor(dask.config.get("num_workers", None), mp_context=get_context(),
                                 initializer=initialize_worker_process) as pool, \
                dask.config.set(scheduler=spec, pool=pool):
            yield None
        return
    if ":" not in spec:  # a misspelt name, not an address
        raise OptionError("scheduler", spec, f"must be {_CHOICES}")
    import_dask(f"--scheduler {spec}")
    try:
        from distributed import Client
    except ImportError as exc:
        raise OptionError("scheduler", spec,
                          "a scheduler address needs distributed: install symreward[dask]"
                          ) from exc
    try:
        client = Client(spec, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise OptionError("scheduler", spec, f"cannot connect: {exc}") from None
    with client:
        yield client
