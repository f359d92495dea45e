"""Fixture splits in the exact shape `umidata split` writes, with α-UMi-looking text."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROLES = ("global", "planner", "caller", "summarizer")
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Dakar"]
TOOLS = [
    ("get_weather", "Get the current weather for a city", "city"),
    ("search_flights", "Search flights to a city", "city"),
    ("find_hotels", "Find hotels in a city", "city"),
]


def _docs(rng: random.Random) -> str:
    tools = rng.sample(TOOLS, 2)
    return json.dumps(
        [
            {
                "name": n,
                "description": d,
                "parameters": {"type": "object", "properties": {a: {"type": "string"}}, "required": [a]},
            }
            for n, d, a in tools
        ]
    ), tools


def _trajectory(rng: random.Random, tid: str) -> list[dict]:
    """One dialogue: planner -> caller -> (observation) -> planner -> summarizer, as role rows."""
    docs, tools = _docs(rng)
    city = rng.choice(CITIES)
    name, _, arg = tools[0]
    head = f"You have assess to the following apis:\n{docs}\nThe conversation history is:\n"
    history = f"user: Please use {name} for {city} and tell me the result.</s>"
    rows = []
    plan1 = f"Thought: I need to call {name} with {arg} {city}. Next: caller."
    call = f'Action: {name}\nAction Input: {{"{arg}": "{city}"}}'
    obs = f'observation: {{"result": "{name} ok for {city}"}}</s>'
    plan2 = "Thought: I have the result and can answer now. Next: conclusion."
    answer = f"The {name} result for {city} is ok."
    steps = [
        ("planner", history, plan1),
        ("caller", history + f"assistant: {plan1}</s>", call),
        ("planner", history + f"assistant: {plan1}</s>caller: {call}</s>" + obs, plan2),
        (
            "summarizer",
            history + f"assistant: {plan1}</s>caller: {call}</s>" + obs + f"assistant: {plan2}</s>",
            answer,
        ),
    ]
    for step, (role, hist, completion) in enumerate(steps):
        rows.append(
            {
                "id": f"{tid}-{step}",
                "trajectory_id": tid,
                "step": step,
                "role": role,
                "prompt": head + hist + " assistant: ",
                "completion": completion,
                "source": "fixture",
            }
        )
    return rows


def write_split(
    out: Path,
    n_traj: int = 24,
    n_dev: int = 3,
    seed: int = 0,
    extra: dict[str, list[dict]] | None = None,
    shards: int = 2,
) -> Path:
    """Write OUT/<role>/{train,dev}-0000i-of-0000N.parquet + OUT/manifest.json."""
    rng = random.Random(seed)
    trajs = [_trajectory(rng, f"t{i:04d}") for i in range(n_traj + n_dev)]
    split_rows = {
        "train": [r for t in trajs[:n_traj] for r in t],
        "dev": [r for t in trajs[n_traj:] for r in t],
    }
    roles: dict[str, dict] = {}
    for role in ROLES:
        for split, rows in split_rows.items():
            chosen = [r for r in rows if role == "global" or r["role"] == role]
            if split == "train" and extra and role in extra:
                chosen = chosen + extra[role]
            k = shards if split == "train" else 1
            (out / role).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                part = chosen[i::k]
                table = pa.Table.from_pylist(
                    part,
                    schema=pa.schema(
                        [
                            ("id", pa.string()),
                            ("trajectory_id", pa.string()),
                            ("step", pa.int64()),
                            ("role", pa.string()),
                            ("prompt", pa.string()),
                            ("completion", pa.string()),
                            ("source", pa.string()),
                        ]
                    ),
                )
                path = out / role / f"{split}-{i:05d}-of-{k:05d}.parquet"
                pq.write_table(table, path)
                entry = roles.setdefault(role, {}).setdefault(
                    split, {"files": [], "bytes": [], "sha256": [], "examples": 0, "trajectories": 0}
                )
                entry["files"].append(path.name)
                entry["bytes"].append(path.stat().st_size)
                entry["sha256"].append(hashlib.sha256(path.read_bytes()).hexdigest())
                entry["examples"] += len(part)
    # the manifest `umidata split` writes, as far as umitrain reads it (files, sizes, digests, rows)
    manifest = {"format": "umi.split/v1", "umi_version": "fixture", "options": {"seed": seed}, "roles": roles}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_split(tmp_path_factory.mktemp("split"))


@pytest.fixture
def make_split(tmp_path: Path) -> Callable[..., Path]:
    def make(**kw) -> Path:
        return write_split(tmp_path / f"split{len(list(tmp_path.iterdir()))}", **kw)

    return make


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, split_dir: Path) -> Path:
    """The offline tiny model + tokenizer, built once from the fixture's global data."""
    from umi_train.tiny import make_tiny

    return make_tiny(
        sorted((split_dir / "global").glob("train-*.parquet")),
        tmp_path_factory.mktemp("tiny"),
        vocab_size=600,
    )
