"""Named benchmarks behind ``accord bench NAME``.

Each benchmark is a module with ``run(progress=None, **options) -> dict`` returning the
figures it measured; the CLI prints that dict as the last line, one JSON object:
``{"bench", "metric", "value", "unit", "baseline", "ratio", ...}``. A baseline, where
there is one, is measured in the same run, never remembered from another machine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from accord.errors import UserError

BENCHMARKS: dict[str, str] = {
    "synth": "accord.bench.synth",
    "quality": "accord.bench.quality",
    "ingest": "accord.bench.ingest",
    "federated-count": "accord.bench.federated_count",
    "task-overhead": "accord.bench.task_overhead",
    "glm": "accord.bench.glm",
}

Progress = Callable[[str, int, int], None]


def check_name(name: str) -> str:
    """The benchmark's module name; a clear error for an unknown benchmark."""
    module_name = BENCHMARKS.get(name)
    if module_name is None:
        raise UserError(
            f"unknown benchmark {name!r}", hint=f"choose one of: {', '.join(sorted(BENCHMARKS))}"
        )
    return module_name


def run(name: str, progress: Progress | None = None) -> dict[str, Any]:
    """Run the named benchmark and return its figures."""
    module = importlib.import_module(check_name(name))
    result: dict[str, Any] = module.run(progress=progress)
    return result
