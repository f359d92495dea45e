"""Issue 22: ``umidata split --engine ray`` writes what the local engine writes — the same rows in
the same shards, the same counts and rejects — on a local Ray runtime on CPU; the manifest and
card differ only where they name the engine. One Ray runtime per test session (2 CPUs)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.trajectory.schema import validator

from .conftest import EXAMPLES, REPO


def run(*args: str | Path):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield
    if started:
        ray.shutdown()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_split(local: Path, other: Path, engine: str = "ray") -> None:
    """Byte-identical but for the manifest's ``options.engine`` and the card's command line."""
    a, b = _tree(local), _tree(other)
    assert sorted(a) == sorted(b)
    for name in a:
        if name not in ("manifest.json", "README.md"):
            assert a[name] == b[name], name
    ma, mb = orjson.loads(a["manifest.json"]), orjson.loads(b["manifest.json"])
    validator("manifest").validate(mb)
    assert mb["options"].pop("engine") == engine and "engine" not in ma["options"]
    assert ma == mb
    card = b["README.md"].decode().replace(f"umidata split --engine {engine}", "umidata split")
    assert card.replace(str(other), str(local)) == a["README.md"].decode()
    rejects = {line for line in a["rejects.jsonl"].splitlines()}
    assert rejects and rejects == set(b["rejects.jsonl"].splitlines())


@pytest.mark.parametrize("by", ["path", "url"])
def test_ray_engine_writes_what_the_local_engine_writes(by: str, ray_runtime: None, tmp_path: Path) -> None:
    """Paths, and file:// URLs read through fsspec in the Ray workers."""
    args = [EXAMPLES if by == "path" else EXAMPLES.as_uri(), "--shard-size", "2", "--export", "glpft-json", "-q"]
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert run("split", *args, "-o", local, "--workers", "1").exit_code == 1
    res = run("split", *args, "-o", ray_out, "--engine", "ray", "--workers", "2")
    assert res.exit_code == 1, res.output
    assert len(list((local / "planner").glob("train-*"))) > 1  # several shards, from several tasks
    assert_same_split(local, ray_out)


def test_engine_ray_without_ray_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    res = run("split", EXAMPLES, "-o", tmp_path / "s", "--engine", "ray")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'umi[ray]'" in lines[0], res.stderr
    assert not (tmp_path / "s").exists()


def test_ray_address_needs_engine_ray(tmp_path: Path) -> None:
    res = run("split", EXAMPLES, "-o", tmp_path / "s", "--ray-address", "auto")
    assert res.exit_code == 2 and "--ray-address needs --engine ray" in res.stderr
