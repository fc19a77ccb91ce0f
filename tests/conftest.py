"""Fixtures shared by the test modules; the helpers they are built on are in ``support.py``."""

from __future__ import annotations

from collections.abc import Callable
from subprocess import CompletedProcess

import pytest
from hypothesis import settings
from support import random_walk, run_cli

from symreward.data import Dataset

# The property tests draw the same examples on every run and every machine, so a fresh clone's
# run is reproducible (a fresh clone has no example database to replay a failure from).
# `pytest --hypothesis-profile=explore` draws new examples, to look for more.
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("reproducible")


@pytest.fixture
def walk() -> Dataset:
    """600 transitions of a random walk in episodes of 50 steps (``support.random_walk``)."""
    return random_walk()


@pytest.fixture
def cli() -> Callable[..., CompletedProcess[str]]:
    """Runs the real ``symreward`` command in a new process (``support.run_cli``)."""
    return run_cli


# ---------------------------------------------------------------------- dask (issue 17)


@pytest.fixture(scope="module")
def dask_client():
    """A ``dask.distributed`` client of a real local cluster (two worker processes on the
    loopback address), shared by a module's tests. It is not dask's default scheduler: a test
    chooses it with ``dask.config.set(scheduler=dask_client)``."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client
