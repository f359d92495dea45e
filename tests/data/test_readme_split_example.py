"""The README's `umidata split` example shows what its command prints: the command is taken from
the README and run, and its output must equal the README's block (the run time aside)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_data.cli.commands import main

from .conftest import REPO


def _readme_example() -> tuple[list[str], list[str]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("\n$ umidata split ", 1)[1].split("```", 1)[0]
    lines = block.splitlines()
    command = lines[0]
    rest = lines[1:]
    while command.endswith("\\"):  # a continued command line
        command = command[:-1] + rest.pop(0)
    return shlex.split(command), rest


def test_readme_split_example_is_what_the_command_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, shown = _readme_example()
    assert "--export" in args  # the size line depends on it: the README shows the demo's command
    out = args[args.index("-o") + 1]
    monkeypatch.chdir(REPO)  # the example's inputs are relative to the repository
    args[args.index("-o") + 1] = str(tmp_path / "split")
    res = CliRunner().invoke(main, ["split", *args])
    assert res.exit_code == 1  # the bundled example holds deliberately broken records
    got = res.stdout.replace(str(tmp_path / "split"), out)

    def timeless(text: str) -> str:
        return re.sub(r" in \d+\.\d s;", " in N s;", text)

    assert timeless(got).splitlines() == timeless("\n".join(shown)).splitlines()
