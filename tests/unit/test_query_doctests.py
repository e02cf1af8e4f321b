"""The examples in the query and privacy docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "accord.query.model",
    "accord.query.builders",
    "accord.query.engines",
    "accord.privacy.disclosure",
    "accord.privacy.models",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
