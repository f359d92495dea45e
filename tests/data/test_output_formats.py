"""The output-format contract of ``umidata convert --to``: the registry the choices come from,
the suffixes each format writes (refused before anything is read), and formats that are refused
when defined incompletely."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main
from umi_data.export.convert import OutputError, output_kind
from umi_data.export.outputs import OUTPUT_KINDS, OUTPUTS, OutputFormat

from .conftest import good_chat, write_jsonl


def test_the_registry_is_the_to_choices() -> None:
    assert list(OUTPUTS) == ["umi", "alpha-umi", "openai", "sharegpt"]
    convert = main.commands["convert"]
    (to,) = [p for p in convert.params if p.name == "to"]
    assert list(to.type.choices) == list(OUTPUTS)  # type: ignore[attr-defined]
    for fmt in OUTPUTS.values():
        assert fmt.suffixes and set(fmt.suffixes) <= set(OUTPUT_KINDS)
    assert [n for n, f in OUTPUTS.items() if not f.whole_chats] == ["umi"]


@pytest.mark.parametrize(("to", "name", "message"), [
    ("umi", "o.txt", "cannot tell what to write from the name {out}: use .jsonl (one trajectory per line), "
                     ".json (a JSON array) or .parquet"),
    ("alpha-umi", "o.jsonl", "--to alpha-umi writes a JSON list: name the output *.json, not {out}"),
    ("openai", "o.parquet", "--to openai writes JSONL (or a JSON list for .json): name the output *.jsonl or *.json"),
    ("sharegpt", "o.txt", "--to sharegpt writes JSONL (or a JSON list for .json): name the output *.jsonl or *.json"),
])
def test_a_suffix_the_format_does_not_write_is_refused_before_reading(
    tmp_path: Path, to: str, name: str, message: str
) -> None:
    out = tmp_path / name
    with pytest.raises(OutputError) as e:
        output_kind(out, to)  # type: ignore[arg-type]
    assert str(e.value) == message.format(out=out)
    res = CliRunner().invoke(main, ["convert", str(write_jsonl(tmp_path / "in.jsonl", [good_chat()])), "-o",
                                    str(out), "--to", to])
    assert res.exit_code == 2 and not out.exists()


@pytest.mark.parametrize(("to", "suffix", "kind"), [
    ("umi", ".PARQUET", "parquet"), ("umi", ".ndjson", "jsonl"), ("alpha-umi", ".json", "json"),
    ("openai", ".jsonl", "jsonl"), ("sharegpt", ".json", "json"),
])
def test_each_format_writes_its_suffixes(to: str, suffix: str, kind: str) -> None:
    assert output_kind(f"out{suffix}", to) == kind  # type: ignore[arg-type]


def test_an_incomplete_output_format_is_refused_and_not_registered() -> None:
    before = dict(OUTPUTS)
    with pytest.raises(TypeError, match="write"):
        type("NoWrite", (OutputFormat,), {"name": "nowrite", "suffixes": (".jsonl",)})
    with pytest.raises(TypeError, match="suffixes"):
        type("NoSuffixes", (OutputFormat,), {"name": "nosuffix", "write": lambda self, out, accepted: None})
    with pytest.raises(TypeError, match="suffixes"):
        type("Csv", (OutputFormat,), {"name": "csv", "suffixes": (".csv",), "write": lambda self, out, acc: None})
    with pytest.raises(TypeError, match="taken"):
        type("Again", (OutputFormat,), {"name": "openai", "suffixes": (".jsonl",), "write": lambda s, o, a: None})
    assert before == OUTPUTS
