"""Round trips: stage 1 chains → canonical → α-UMi equals stage 2; stage 2 → canonical → α-UMi
is lossless (byte for byte)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.readers.toolbench import turns_from_chain
from umi_data.render.alpha_umi import tool_docs, tool_from_doc
from umi_data.trajectory import Source, Trajectory, derive_outcome


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_stage1_chains_to_stage2(stage1: list[dict], stage2_path: Path, tmp_path: Path) -> None:
    rows = []
    for k, item in enumerate(stage1):
        src = Source("toolbench", "raw_data_stage_1.json", index=k)
        turns, _findings, _dropped = turns_from_chain(item["instruction"], item["chains"], src)
        tools = [tool_from_doc(d) for d in item["tools"]]
        assert tool_docs(tools) == item["tools"]
        t = Trajectory(f"stage1/{k}", src, item["instruction"], tools, turns, derive_outcome(turns))
        rows.append(t.to_dict())
    canon = tmp_path / "stage1.jsonl"
    canon.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "stage2.json"
    assert run("convert", canon, "-o", out, "--to", "alpha-umi").exit_code == 0
    got = json.loads(out.read_text(encoding="utf-8"))
    want = json.loads(stage2_path.read_text(encoding="utf-8"))
    assert len(got) == len(want) == 20
    for g, w in zip(got, want, strict=True):
        assert g["conversations"] == w["conversations"]
        assert g["tools"] == w["tools"] and g["instruction"] == w["instruction"]


def test_stage2_lossless(stage2_path: Path, tmp_path: Path) -> None:
    canon = tmp_path / "c.jsonl"
    assert run("convert", stage2_path, "-o", canon).exit_code == 0
    again = tmp_path / "again.jsonl"
    assert run("convert", canon, "-o", again).exit_code == 0
    assert again.read_bytes() == canon.read_bytes()  # the canonical reader keeps source and everything
    out = tmp_path / "back.json"
    assert run("convert", again, "-o", out, "--to", "alpha-umi").exit_code == 0
    assert out.read_bytes() == stage2_path.read_bytes()
