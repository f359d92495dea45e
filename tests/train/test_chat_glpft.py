"""`umitrain glpft` on chat rows (`umidata split --template chat`) with the offline tiny model:
both stages run, the tiny tokenizer carries a chat template, the loss falls."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from umi_data.cli.commands import main as umidata
from umi_train.glpft import run_glpft

REPO = Path(__file__).resolve().parents[2]


def test_glpft_runs_both_stages_on_chat_data(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    data = tmp_path / "split"
    res = CliRunner().invoke(umidata, ["split", str(REPO / "examples" / "toolbench-mini" / "answer"),
                                       str(REPO / "examples" / "openai-chats.jsonl"), "-o", str(data),
                                       "--template", "chat", "--dev-ratio", "0", "--workers", "1", "-q"])
    assert res.exit_code in (0, 1), res.output
    out = tmp_path / "glpft"
    sets = ("common.max_steps=10", "stage2.common.max_steps=1", "common.save_steps=100", "common.logging_steps=1",
            "common.batch_size=1")
    result = run_glpft(REPO / "pipelines" / "tiny-glpft.yaml", {"data": str(data), "output_dir": str(out)},
                       sets, {"quiet": True}, echo=lambda _: None)
    stages = result["stages"]
    assert [s["role"] for s in stages] == ["global", "planner", "caller", "summarizer"]
    for s in stages:
        tr = s["examples"]["train"]
        assert tr["chat_template"].startswith("TRL's training variant") and tr["used"] > 0
        assert 0 < tr["loss_tokens"] < tr["tokens"]
        assert s["batching"] != "pad"  # packing keeps working on chat rows
    history = [loss for _, loss in stages[0]["loss_history"]]
    assert stages[0]["steps"] == 10 and sum(history[-3:]) / 3 < 0.9 * sum(history[:3]) / 3
    tok = AutoTokenizer.from_pretrained(out / "stage1-global" / "model")
    assert "<tool_call>" in tok.chat_template and tok.eos_token == "<|im_end|>"  # saved with the serving template
