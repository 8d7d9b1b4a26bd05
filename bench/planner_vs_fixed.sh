#!/usr/bin/env bash
# Issue 15, acceptance 4: the planner (default, up to 3 rounds) against the fixed recipe (--max-rounds 1)
# at the same teacher budget, two seeds, each run in a fresh P2M_HOME (no cached teacher answers), no
# index, generation bounded by calls only (--gen-minutes 0) so that load on the machine cannot change
# what is generated. Outputs: bench/out/i15/<task>_<arm>_s<seed>.{json,log}.
#   bash bench/planner_vs_fixed.sh [TREC_DIR] [OUT]   (TREC_DIR from bench/make_trec.py; default /tmp/bench-trec)
set -u
cd "$(dirname "$0")/.."
TREC=${1:-/tmp/bench-trec}
B=$(cd ../shared/bench-data && pwd)
OUT=${2:-bench/out/i15}
P2M=${P2M:-.venv/bin/p2m}
mkdir -p "$OUT"
# task dir, teacher-call budget (classification: ~150 examples; QA: the teacher writes passages only)
TASKS=("$TREC 200" "$B/sst2 200" "$B/ag_news 200" "bench/tasks/qa_passages 40" "bench/tasks/python_snippets 150")
for seed in 0 1; do
  for t in "${TASKS[@]}"; do
    set -- $t
    dir=$1 budget=$2 name=$(basename "$1")
    for arm in planner fixed; do
      tag=${name}_${arm}_s${seed}
      [ -s "$OUT/$tag.json" ] && continue
      extra=() ; [ "$arm" = fixed ] && extra=(--max-rounds 1)
      home=/tmp/i15home/$tag; rm -rf "$home"
      echo "== $tag $(date -u +%H:%M:%S) commit $(git rev-parse --short HEAD)" | tee -a "$OUT/all.log"
      start=$(date +%s)
      P2M_HOME=$home $P2M bench "$dir" --out "$OUT/$tag.json" --seed "$seed" \
        --budget-llm-calls "$budget" --gen-minutes 0 --no-teacher --no-ceiling --no-retrieve \
        "${extra[@]}" > "$OUT/$tag.log" 2>&1
      echo "   rc $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/all.log"
    done
  done
done
