"""Shared fixtures for the evaluation tests.

``memorised``: the tiny model trained with ``umitrain`` (in process) until it has memorised a few
short α-UMi trajectories, one model per role (planner, caller, summarizer, and global for the
single-model path). Session-scoped: the memorisation test and the agent loop tests replay it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
STAGE2 = SHARED / "alpha-umi-example" / "raw_data_stage_2.json"
ROLES = ("planner", "caller", "summarizer", "global")

TOOLS = [
    {"Name": "get_weather_for_meteo", "function": "Current weather of a city.", "input": {"city": "string, city name"}},
    {"Name": "convert_for_money", "function": "Convert an amount between currencies.",
     "input": {"amount": "number", "to": "string, target currency"}},
]


def _conv(*items: tuple[str, str]) -> list[dict[str, str]]:
    return [{"from": f, "value": v} for f, v in items]


# Short trajectories covering every route: call, conclusion (after a call) and give-up.
TRAJECTORIES = [
    {"tools": TOOLS, "instruction": "Weather in Paris?", "conversations": _conv(
        ("user", "Weather in Paris?"),
        ("assistant", "Ask the weather api for Paris.\n Next: caller."),
        ("caller", 'Action: get_weather_for_meteo\nAction Input: {"city": "Paris"}'),
        ("observation", '{"temp": 21}'),
        ("assistant", "It is 21 degrees.\n Next: conclusion."),
        ("conclusion", "It is 21 degrees in Paris."))},
    {"tools": TOOLS, "instruction": "5 USD in EUR?", "conversations": _conv(
        ("user", "5 USD in EUR?"),
        ("assistant", "Convert with the money api.\n Next: caller."),
        ("caller", 'Action: convert_for_money\nAction Input: {"amount": 5, "to": "EUR"}'),
        ("observation", '{"result": 4.6}'),
        ("assistant", "Got the amount.\n Next: conclusion."),
        ("conclusion", "5 USD is 4.6 EUR."))},
    {"tools": TOOLS, "instruction": "Tell me a secret.", "conversations": _conv(
        ("user", "Tell me a secret."),
        ("assistant", "No api can do this.\n Next: give up."))},
]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference data not available: {path}")
    return path


@dataclass(frozen=True)
class Memorised:
    """Where the memorised models are: ``models[role]`` is a checkpoint dir; ``data`` the α-UMi
    stage-2 file of :data:`TRAJECTORIES`; ``split`` the ``umidata split`` dir they were trained on."""

    data: Path
    split: Path
    models: dict[str, str]


def train_memorised(root: Path, roles: tuple[str, ...] = ROLES, steps: int = 100) -> Memorised:
    import torch

    from umi_data.split.pipeline import SplitOptions, split
    from umi_train.train import TrainConfig, train_role

    data = root / "memorise.json"
    data.write_text(json.dumps(TRAJECTORIES), encoding="utf-8")
    split_dir = root / "split"
    split([str(data)], str(split_dir), SplitOptions(dev_ratio=0.0))
    models: dict[str, str] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only spins (≈40 s of one core for four roles)
    try:
        for role in roles:
            cfg = TrainConfig(
                data=split_dir, role=role, output_dir=root / role, model="tiny", epochs=1000, max_steps=steps,
                lr=5e-3, warmup_ratio=0.05, scheduler="constant_with_warmup", batch_size=8, bf16=False,
                gradient_checkpointing=False, save_steps=10_000, logging_steps=50, tiny_vocab=400, quiet=True,
            )
            models[role] = train_role(cfg)["model_dir"]
    finally:
        torch.set_num_threads(threads)
    return Memorised(data, split_dir, models)


def _memorised_once(tmp_path_factory: pytest.TempPathFactory) -> Memorised:
    """Trained once per test run, not once per xdist worker (~30-40 s each): the first worker to
    take the lock trains into the run's shared temp dir, the others read what it wrote."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "memorised"
    done = shared / "memorised.json"
    with FileLock(str(shared / "memorised.lock")):
        if not done.exists():
            root.mkdir(exist_ok=True)
            m = train_memorised(root)
            done.write_text(json.dumps({"data": str(m.data), "split": str(m.split), "models": m.models}))
    saved = json.loads(done.read_text())
    return Memorised(Path(saved["data"]), Path(saved["split"]), saved["models"])


@pytest.fixture(scope="session")
def memorised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memorised]:
    """Also runs the tests that use it on one torch thread: on a loaded 2-core machine a second
    thread makes the tiny model's generation ~30x slower (threads spin waiting for each other)."""
    import torch

    m = _memorised_once(tmp_path_factory)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield m
    torch.set_num_threads(threads)
