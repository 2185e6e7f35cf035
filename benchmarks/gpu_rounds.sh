#!/usr/bin/env bash
# Issue #16, item 2 on one GPU: SASRec, patience 20, RSIR for 3 rounds (seeds 2022-2024) and RSIR with
# fidelity control off for 3 rounds (seed 2022), on Beauty and Toys, from yamls/paper_{beauty,toys}_full.yaml.
# Eight suites run side by side on one GPU (two CPU threads each); the fidelity-off suite of a file starts
# once that file's base run of seed 2022 has finished (the two would otherwise both claim it).
#
#   bash benchmarks/gpu_rounds.sh [WATCH_SECONDS] [TAR]
#
# Starts the runs that are not running (each in its own session, so it outlives this script), prints
# progress every minute for WATCH_SECONDS (default 540) or until all have exited, then, when TAR is
# given, packs the small result files (json, yaml, logs; never checkpoints) into TAR.  Called again it
# only watches; suites resume where they stopped.  Keep the results with benchmarks/keep_results.py.
set -u
WATCH=${1:-540}
TAR=${2:-}
PY=${PYTHON:-python3}
mkdir -p runs/gpu_logs
start() {  # start DATASET METHOD SEED, unless its log says it is running or done
  local log=runs/gpu_logs/$1_$2_$3.log
  [ -e "$log" ] && return
  echo "start $1 $2 seed $3"
  setsid nohup $PY -m recstudio_rsir.cli suite yamls/paper_$1_full.yaml --device cuda:0 --num_threads 2 \
    --seeds "$3" --methods "$2" --quiet > "$log" 2>&1 < /dev/null &
}
launch() {
  for d in beauty toys; do
    for s in 2022 2023 2024; do start $d rsir $s; done
    [ -e runs/paper_${d}_full/base/seed2022/results.json ] && start $d rsir_fidelity_off 2022
  done
}
progress() {
  for f in runs/paper_*_full/*/seed*; do
    [ -d "$f" ] || continue
    local done=$(ls -d "$f"/round_*/metrics.json 2>/dev/null | wc -l)
    local fin=""; [ -e "$f/results.json" ] && fin=" finished"
    echo "  $f: ${done} round(s) with metrics${fin}"
  done
}
t0=$(date +%s)
launch
while :; do
  sleep 30
  launch
  el=$(( $(date +%s) - t0 ))
  alive=$(pgrep -fc "recstudio_rsir.cli suite" || true)
  if (( el % 120 < 30 )) || (( alive == 0 )) || (( el >= WATCH )); then
    echo "--- ${el}s, ${alive} suite(s) running"; progress
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
  fi
  (( alive == 0 || el >= WATCH )) && break
done
if [ -n "$TAR" ]; then
  find runs \( -name '*.json' -o -name '*.yaml' -o -name '*.log' -o -name '*.md' \) -size -4M -print \
    | tar czf "$TAR" -T -
fi
grep -l -i "error\|traceback" runs/gpu_logs/*.log 2>/dev/null | while read -r f; do echo "== $f"; tail -5 "$f"; done
exit 0
