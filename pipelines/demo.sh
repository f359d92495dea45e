#!/usr/bin/env bash
# The main job on the bundled example, end to end, on CPU, with no downloads:
#   validate → convert → split (four GLPFT role datasets) → stats → GLPFT with the tiny model
#   → umieval generate on the split's dev steps → umieval score; then the agent loop: a tiny trio
#   that has memorised three short trajectories (examples/agent) runs against the README's own
#   Python tools, calling them and answering.
# `make demo` runs it; it writes everything under demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo-out}
INPUTS=(examples/toolbench-mini/answer examples/openai-chats.jsonl)
mkdir -p "$OUT"

# Exit code 1 means "findings or rejects": the example holds deliberately broken records.
ok_or_findings() { "$@" || { rc=$?; [ "$rc" -eq 1 ] || exit "$rc"; }; }

echo "== umidata validate (the bundled example has deliberately bad records)"
ok_or_findings "$BIN/umidata" validate "${INPUTS[@]}"
echo
echo "== umidata convert → $OUT/trajectories.jsonl (+ rejects beside it)"
ok_or_findings "$BIN/umidata" convert "${INPUTS[@]}" -o "$OUT/trajectories.jsonl" --overwrite
echo
echo "== umidata split → $OUT/split"
ok_or_findings "$BIN/umidata" split "${INPUTS[@]}" -o "$OUT/split" --overwrite --dev-ratio 0.2 \
  --export glpft-json
echo
echo "== umidata stats $OUT/split"
"$BIN/umidata" stats "$OUT/split"
echo
echo "== umitrain glpft (tiny random model, CPU): stage 1 on global, then planner, caller, summarizer"
"$BIN/umitrain" glpft pipelines/tiny-glpft.yaml --data "$OUT/split" -o "$OUT/glpft" --quiet
echo
echo "== umieval generate: the tiny trio on the split's dev steps (teacher-forced; the numbers are low, the path works)"
ok_or_findings "$BIN/umieval" generate "$OUT/split" --glpft-run "$OUT/glpft" -o "$OUT/predictions.jsonl" \
  --overwrite --threads 1
echo
echo "== umieval score $OUT/predictions.jsonl"
ok_or_findings "$BIN/umieval" score "$OUT/predictions.jsonl"
echo
echo "== umieval run: a tiny trio that memorised examples/agent/trajectories.json, with the README's tools"
echo "   (umidata split, then umitrain glpft pipelines/tiny-memorise.yaml: log in $OUT/agent-glpft.log)"
# The tiny model's matrices are small: one torch thread (a second only spins, several times slower
# on a busy 2-core machine).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$BIN/umidata" split examples/agent/trajectories.json -o "$OUT/agent-split" --overwrite --dev-ratio 0 --quiet
"$BIN/umitrain" glpft pipelines/tiny-memorise.yaml --data "$OUT/agent-split" -o "$OUT/agent-glpft" --quiet \
  > "$OUT/agent-glpft.log" 2>&1 || { rc=$?; tail -n 25 "$OUT/agent-glpft.log"; exit "$rc"; }
# --overwrite: a fresh run file (`umieval run` would resume an old one, not rerun it)
"$BIN/umieval" run examples/agent/queries.jsonl -o "$OUT/agent-runs.jsonl" --overwrite \
  --tools python:examples/agent/my_tools.py --glpft-run "$OUT/agent-glpft" --max-new-tokens 64
"$BIN/python" examples/agent/show_runs.py "$OUT/agent-runs.jsonl"
echo
echo "Done. Datasets: $OUT/split (see $OUT/split/README.md); models: $OUT/glpft/*/model;"
echo "predictions: $OUT/predictions.jsonl; agent runs: $OUT/agent-runs.jsonl"
