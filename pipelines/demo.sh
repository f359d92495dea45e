#!/usr/bin/env bash
# The main job on the bundled example, end to end, on CPU, with no downloads:
#   validate → convert → split (four GLPFT role datasets) → stats → GLPFT with the tiny model
#   → umieval generate on the split's dev steps → umieval score.
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
echo "== umieval run: the tiny trio acts on the bundled queries, tools answered from the recordings"
# --overwrite: the models were just retrained, so every query runs again (and runs.rejects.jsonl is replaced)
ok_or_findings "$BIN/umieval" run examples/toolbench-mini/answer -o "$OUT/runs.jsonl" --overwrite \
  --tools replay:examples/toolbench-mini/answer --glpft-run "$OUT/glpft" --max-steps 3 --max-new-tokens 48
echo
echo "Done. Datasets: $OUT/split (see $OUT/split/README.md); models: $OUT/glpft/*/model;"
echo "predictions: $OUT/predictions.jsonl; agent runs: $OUT/runs.jsonl"
