"""Print a `umieval run` file as the agent's steps, one line per turn, so the demo shows what the
loop did (the planner's thought and decision, each call, the tool's answer, the final answer)
rather than only the summary counts. The run file itself is canonical trajectories (JSONL).

    python examples/agent/show_runs.py demo-out/agent-runs.jsonl
"""

from __future__ import annotations

import json
import sys

from umi_data.trajectory import Trajectory, Turn

WIDTH = 100  # a long observation is clipped: the run file has it whole
DECISIONS = {"call": "→ caller", "conclude": "→ conclusion", "give_up": "→ give up"}


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= WIDTH else flat[: WIDTH - 1] + "…"


def turn_line(turn: Turn) -> str:
    if turn.role == "planner":
        text = f"{turn.thought or ''}  {DECISIONS.get(turn.decision or '', '')}".strip()
    elif turn.role == "caller":
        text = "; ".join(f"{c.name} {c.arguments}" for c in turn.calls or [])
    elif turn.role == "observation" and turn.error:
        text = f"error: {turn.error}"
    else:
        text = turn.content or ""
    return f"  {turn.role:<11}  {_clip(text)}"


def show(path: str) -> list[str]:
    lines: list[str] = []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            traj = Trajectory.from_dict(json.loads(raw))
            lines.append(f"{traj.id} ({traj.outcome}): {traj.instruction}")
            lines.extend(turn_line(t) for t in traj.turns if t.role != "user")
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: show_runs.py RUNS.jsonl")
    print("\n".join(show(sys.argv[1])))
