"""Every named benchmark can be run, is run by ``make bench`` and is documented."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from accord.bench import BENCHMARKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_is_runnable_run_by_the_script_and_documented(name: str) -> None:
    module = importlib.import_module(BENCHMARKS[name])
    assert "progress" in inspect.signature(module.run).parameters
    script = (ROOT / "benchmarks" / "run_all.sh").read_text(encoding="utf-8")
    (loop,) = [line for line in script.splitlines() if line.startswith("for name in ")]
    assert name in loop.removeprefix("for name in ").removesuffix("; do").split()
    developers = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    assert f"| `{name}` |" in developers
