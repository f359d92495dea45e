"""``umieval score`` / ``umieval compare``: JSON shape, --cases, terminal tables, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from umi_eval.cli.commands import main
from umi_eval.score.metrics import METRICS

from .score_builders import MIXED_TRIO, write_original, write_umi


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    return write_original(tmp_path / "predictions.json", MIXED_TRIO)


def test_json_is_one_object_with_the_agreed_keys(mixed: Path) -> None:
    code, out, _ = run("score", str(mixed), "--json", "--bootstrap", "200")
    assert code == 0
    obj = json.loads(out)  # exactly one JSON value on stdout
    assert list(obj) == ["metrics", "ci", "counts"]
    assert list(obj["metrics"]) == list(METRICS) == list(obj["ci"])
    assert all(0.0 <= v <= 1.0 for v in obj["metrics"].values())
    assert all(len(v) == 2 and v[0] <= v[1] for v in obj["ci"].values())
    assert obj["metrics"]["plan_acc"] == pytest.approx(0.7)
    assert obj["counts"]["plan_acc"] == {"numerator": 7.0, "denominator": 10}
    assert obj["counts"]["act_em"] == {"numerator": 3.0, "denominator": 6}
    assert obj["counts"]["bootstrap"] == {"resamples": 200, "seed": 0, "conversations": 10}


def test_cases_file_lists_every_failed_step_with_its_reasons(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "cases" / "failed.jsonl"
    code, _, _ = run("score", str(mixed), "--json", "--cases", str(out), "--bootstrap", "0")
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_item = {r["source"].rsplit("[", 1)[1].rstrip("]"): r["reasons"] for r in rows}
    # S1, S3, S9 (items 0, 2, 8) are right; the other seven failed, each for its own reason
    assert sorted(by_item, key=int) == ["1", "3", "4", "5", "6", "7", "9"]
    assert by_item["1"] == ["args_mismatch: F1 0.75"]
    assert by_item["3"] == ["wrong_action: reference get_forecast_for_meteo, predicted get_weather_for_meteo"]
    assert by_item["4"] == ["hallucinated_tool: Finish"]
    assert by_item["5"] == ["plan_mismatch: reference call, predicted finish"]
    assert by_item["6"][0].startswith("answer_differs: R-L 0.545")
    assert by_item["9"] == ["plan_mismatch: reference give up, predicted call", "hallucinated_tool: made_up_tool"]
    assert rows[0]["reference"]["plan"] == "call" and "prediction_text" in rows[0]
    assert not list(out.parent.glob(".*.tmp"))  # atomic write leaves no temporary file


def test_terminal_tables_fit_a_pipe(mixed: Path) -> None:
    code, out, _ = run("score", str(mixed), "--bootstrap", "100")
    assert code == 0
    assert "Plan ACC" in out and "70.00" in out and "Hallu." in out
    assert "reference \\ predicted" in out and "made_up_tool" in out
    assert out.splitlines()[0] == f"umieval score {mixed} (alpha-umi-trio): 10 steps"
    assert max(len(line) for line in out.splitlines()[1:]) <= 120  # the first line holds the path, any length


@pytest.mark.parametrize("command", ["score", "compare"])
def test_no_line_carries_trailing_padding(mixed: Path, command: str) -> None:
    """rich pads a table's title and caption to the table's width; piped, that is trailing white
    space on the header line (and the caption's)."""
    code, out, _ = run(command, str(mixed), *([str(mixed)] if command == "compare" else []), "--bootstrap", "50")
    assert code == 0
    padded = [line for line in out.splitlines() if line != line.rstrip()]
    assert padded == [], padded


def test_unscorable_records_exit_1_and_are_listed(mixed: Path, tmp_path: Path) -> None:
    items = json.loads(mixed.read_text())
    items[3]["predictions"] = 42
    mixed.write_text(json.dumps(items))
    cases = tmp_path / "c.jsonl"
    code, out, _ = run("score", str(mixed), "--cases", str(cases), "--bootstrap", "0")
    assert code == 1
    assert f"{mixed}[3]: not_a_string" in out
    assert any("rejected_not_a_string" in r for line in cases.read_text().splitlines()
               for r in json.loads(line)["reasons"])


def test_usage_and_io_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = run("score", str(tmp_path / "missing.json"))
    assert code == 2 and "does not exist" in err
    bad = tmp_path / "bad.json"
    bad.write_text('[{"tools": [], "reference": "r", "output": "p"}]')
    code, out, err = run("score", str(bad), "--json")
    assert code == 2 and out == ""
    assert "closest shape: alpha-umi predictions.json (missing key 'predictions'" in err


def test_cases_never_overwrite_the_input(mixed: Path) -> None:
    before = mixed.read_bytes()
    for extra in ([], ["--overwrite"]):  # not even on request
        code, _, err = run("score", str(mixed), "--cases", str(mixed), *extra)
        assert code == 2 and "is the input" in err and mixed.read_bytes() == before


def test_internal_error_exits_3_and_ctrl_c_130(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import umi_eval.score.scoring

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(umi_eval.score.scoring, "score_file", boom)
    code, _, err = run("score", str(mixed))
    assert code == 3 and "internal error (RuntimeError: bug)" in err

    def interrupt(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(umi_eval.score.scoring, "score_file", interrupt)
    code, _, err = run("score", str(mixed))
    assert code == 130 and "interrupted" in err


def test_compare_json_and_refusal(mixed: Path, tmp_path: Path) -> None:
    code, out, _ = run("compare", str(mixed), str(mixed), "--json", "--bootstrap", "50")
    assert code == 0
    obj = json.loads(out)
    assert list(obj["metrics"]) == list(METRICS)
    assert obj["metrics"]["plan_acc"] == {"a": pytest.approx(0.7), "b": pytest.approx(0.7), "diff": 0.0,
                                          "ci": [0.0, 0.0]}
    code, out, _ = run("compare", str(mixed), str(mixed), "--bootstrap", "50")
    assert code == 0 and "B − A" in out
    other = write_umi(tmp_path / "u.jsonl", [("t#0", *MIXED_TRIO[0])])
    code, out, err = run("compare", str(mixed), str(other))
    assert code == 2 and out == "" and "same kind" in err
    fewer = write_original(tmp_path / "fewer.json", MIXED_TRIO[:5])
    code, _, err = run("compare", str(mixed), str(fewer), "--json")
    assert code == 2 and "not on the same steps: 5 step(s) only in A" in err


@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["compare", "--help"]])
def test_help(args: list[str]) -> None:
    code, out, _ = run(*args)
    assert code == 0 and "Usage:" in out


def test_names_with_brackets_are_printed_as_they_are(tmp_path: Path) -> None:
    from .score_builders import pred_call, ref_call

    path = write_original(tmp_path / "p[1].json", [(ref_call("t", "{}"), pred_call("[bold]x[/bold]", "{}"))])
    code, out, _ = run("score", str(path), "--bootstrap", "0")
    assert code == 0 and "[bold]x[/bold]" in out and "p[1].json" in out


def test_a_junk_tool_name_prints_as_one_short_line(tmp_path: Path) -> None:
    """An untrained model's 'action' can be hundreds of characters with newlines: the table shows one
    clipped line per name, so the report stays one screen."""
    from .score_builders import pred_call, ref_call

    junk = '" " "\n' * 200
    fragment = '{\n  " " " " " "\n  " " " " " " " " " " " " " " " " " " " " " " " " " " " " " " " " " "\n}'
    path = write_original(tmp_path / "p.json", [(ref_call("t", "{}"), pred_call(junk, "{}")),
                                                (ref_call("t", "{}"), pred_call(fragment, "{}"))])
    code, out, _ = run("score", str(path), "--bootstrap", "0")
    rows = [line for line in out.splitlines() if '" "' in line]
    assert code == 0 and len(rows) == 2, rows  # one row per junk name, each on one line
    assert all("…" in r and len(r) <= 120 and "\\n" not in r for r in rows), rows  # clipped, no "\n" escapes
    assert any(r.startswith('│ { " " " " " " " " " ') for r in rows), rows  # the fragment's white space collapsed
