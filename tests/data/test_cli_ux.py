"""Issue 13 on the data side: what a newcomer sees — help text, exit codes, messages that list
the choices, output that stays one line per row when piped, a dataset card that names the real
path, honest size lines, and the documented custom template format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.render.templates import BUILTIN_NAMES, load_template

from .conftest import EXAMPLES, REPO

INPUTS = [str(EXAMPLES / "toolbench-mini" / "answer"), str(EXAMPLES / "openai-chats.jsonl")]


def umidata(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def example_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ux") / "split"
    result = umidata("split", *INPUTS, "-o", str(out), "--dev-ratio", "0.2", "--workers", "1")
    assert result.exit_code == 1, result.output  # the example holds deliberately bad records
    return out, result.output


def test_help_lists_every_exit_code() -> None:
    text = " ".join(umidata("--help").output.split())  # help text is wrapped
    for code in ("0 ok", "1 findings", "2 usage", "130 interrupted"):
        assert code in text


def test_piped_output_keeps_one_line_per_row(example_split: tuple[Path, str]) -> None:
    _, output = example_split  # CliRunner is not a terminal: the piped case
    records = next(line for line in output.splitlines() if line.startswith("records "))
    assert "rejected 3 (json_syntax 1, no_trajectory 1, schema 1); rejects in" in records
    warnings = next(line for line in output.splitlines() if line.startswith("warnings kept"))
    assert warnings.rstrip().endswith("unknown_tool 1")  # the whole list on one line, not wrapped at 80
    assert re.search(r"MB|kB", output.splitlines()[-1]) and "of datasets out" in output


def test_dataset_card_names_the_real_path(example_split: tuple[Path, str]) -> None:
    out, _ = example_split
    card = (out / "README.md").read_text()
    assert f'load_dataset("parquet", data_dir="{out}/planner")' in card
    assert f"umitrain train --data {out} --role planner" in card
    assert "OUTDIR/" not in card


def test_manifest_records_each_shard_size_and_digest(example_split: tuple[Path, str]) -> None:
    import hashlib

    out, _ = example_split
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["roles"]["planner"]["train"]
    assert len(entry["files"]) == len(entry["bytes"]) == len(entry["sha256"]) >= 1
    for name, size, digest in zip(entry["files"], entry["bytes"], entry["sha256"], strict=True):
        data = (out / "planner" / name).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == digest


def test_split_with_nothing_accepted_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "not a list"}\n{"oops": 1}\n')
    result = umidata("split", str(bad), "-o", str(tmp_path / "out"), "--workers", "1")
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert "no examples written: every record was rejected" in last and "datasets out" not in last


def test_unknown_template_lists_the_built_ins(tmp_path: Path) -> None:
    result = umidata("split", *INPUTS, "-o", str(tmp_path / "out"), "--template", "llama3")
    assert result.exit_code == 2
    text = result.output.strip()
    assert "'llama3'" in text and "not a built-in template (" in text and "No such file" not in text
    for name in BUILTIN_NAMES:  # chat included
        assert name in text
    assert "Traceback" not in text and len(text.splitlines()) == 1
    assert "alpha-umi" in umidata("split", "--help").output


def test_readme_template_example_loads_and_renders(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Custom templates", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    example = re.search(r"```json\n(.*?)```", section, re.S)
    assert example, "README: the Custom templates section has a JSON example"
    path = tmp_path / "my-template.json"
    path.write_text(example.group(1))
    template = load_template(str(path))
    prompt = template.render("caller", {"doc": "DOCS", "history": "HIST", "thought": "THINK", "tool_names": "a"})
    assert "DOCS" in prompt and "HIST" in prompt and "THINK" in prompt
    assert prompt.endswith(template.cues["caller"])


def test_stats_quiet_and_corrupt_shard(example_split: tuple[Path, str], tmp_path: Path) -> None:
    import shutil

    out, _ = example_split
    quiet = umidata("stats", str(out), "-q")
    assert quiet.exit_code == 0 and quiet.output == ""
    broken = tmp_path / "split"
    shutil.copytree(out, broken)
    shard = sorted((broken / "caller").glob("train-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    for i in range(len(data) // 4, len(data) // 2):  # a damaged data page (ZSTD error)
        data[i] = 0
    shard.write_bytes(bytes(data))
    result = umidata("stats", str(broken))
    text = result.output.strip()
    assert result.exit_code == 2 and "Traceback" not in text and len(text.splitlines()) == 1, text
    assert f"{shard}: not a readable Parquet file" in text
