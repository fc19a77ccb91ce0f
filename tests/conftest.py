"""Fixtures shared by the test modules; the helpers they are built on are in ``support.py``."""

from __future__ import annotations

from collections.abc import Callable
from subprocess import CompletedProcess

import pytest
from support import random_walk, run_cli

from symreward.data import Dataset


@pytest.fixture
def walk() -> Dataset:
    """600 transitions of a random walk in episodes of 50 steps (``support.random_walk``)."""
    return random_walk()


@pytest.fixture
def cli() -> Callable[..., CompletedProcess[str]]:
    """Runs the real ``symreward`` command in a new process (``support.run_cli``)."""
    return run_cli
