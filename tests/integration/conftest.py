"""Fixtures for integration tests: a real consortium, shared per module or per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consortium import Running, start_consortium


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    yield from start_consortium(tmp_path_factory.mktemp("consortium"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Running]:
    """A consortium of its own, for tests that kill or reconfigure processes."""
    yield from start_consortium(tmp_path / "consortium")
