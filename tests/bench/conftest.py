"""Load the benchmark scripts (``benchmarks/`` is not a package) and skip when their inputs are missing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def corpus_mod() -> ModuleType:
    mod = _load("corpus")
    try:
        mod.source_files()
    except FileNotFoundError as e:
        pytest.skip(f"ToolBench example answers not available: {e}")
    return mod


@pytest.fixture(scope="session")
def bench_mod(corpus_mod) -> ModuleType:
    return _load("bench_split")
