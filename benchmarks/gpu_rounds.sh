#!/usr/bin/env bash
# Suites side by side on one GPU, for a lease of limited time (issue #16).  By default, item 2: SASRec,
# patience 20, RSIR for 3 rounds (seeds 2022-2024) and RSIR with fidelity control off for 3 rounds (seed
# 2022), on Beauty and Toys, from yamls/paper_{beauty,toys}_full.yaml: eight suites.
#
#   bash benchmarks/gpu_rounds.sh [WATCH_SECONDS] [TAR]
#   JOBS="YAML:METHODS:SEED ..." bash benchmarks/gpu_rounds.sh [WATCH_SECONDS] [TAR]
#
# e.g. item 5 (CL4SRec and HSTU, base vs RSIR 1 round, 3 seeds), six suites:
#   JOBS="$(for y in hstu cl4srec; do for s in 2022 2023 2024; do echo yamls/evidence_beauty_$y.yaml:rsir:$s; done; done)" \
#     bash benchmarks/gpu_rounds.sh 540 runs.tgz
#
# On the device tool's machines (Python 3.12, pandas 3 in the image, which RecStudio 0.0.2a1 cannot use;
# no network), carry the packages and the data from this machine (both folders in .git/info/exclude):
#   pip download --no-deps -d .whl recstudio==0.0.2a1 colorlog
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl/pd pandas==2.2.3 pytz tzdata
#   mkdir -p .devdata && cp ../shared/data/seqrec/*.gz .devdata/
# and begin the device command (carry: .whl, .devdata) with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
#   python3 -c "import pandas, sys; sys.exit(pandas.__version__ >= '3')" ||
#     python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/pd .whl/pd/*.whl
#   export PYTHONPATH=/tmp/pd:/tmp/site:$PWD; mkdir -p ../shared/data/seqrec; cp .devdata/*.gz ../shared/data/seqrec/
# Suites started by one call keep running (own sessions) while the machine is held: later calls within
# its 30-second warm window only watch and pack.
#
# Each job is `rsir suite YAML --device cuda:0 --num_threads 2 --seeds SEED --methods METHODS --quiet`, in
# its own session (so it outlives this script), logged to runs/gpu_logs/ (DEVICE=cpu for a dry run; POLL
# seconds between checks, default 30).  Jobs of one YAML and seed share that seed's base run: the first
# starts at once, the others once the base run has finished (two would otherwise both claim it).  Prints
# progress every two minutes for WATCH_SECONDS (default 540) or until all have exited, then, when TAR is
# given, packs the small result files (json, yaml, md, logs; never checkpoints) into TAR.  Called again on the same machine it only watches; suites resume where they
# stopped.  Keep the results with benchmarks/keep_results.py (stopped runs keep their finished rounds).
set -u
WATCH=${1:-540}
TAR=${2:-}
PY=${PYTHON:-python3}
DEFAULT_JOBS=""
for d in beauty toys; do
  for s in 2022 2023 2024; do DEFAULT_JOBS+=" yamls/paper_${d}_full.yaml:rsir:$s"; done
  DEFAULT_JOBS+=" yamls/paper_${d}_full.yaml:rsir_fidelity_off:2022"
done
JOBS=${JOBS:-$DEFAULT_JOBS}
mkdir -p runs/gpu_logs
out_of() { sed -n 's/^output:[[:space:]]*//p' "$1" | head -1; }
log_of() { local y=$(basename "$1" .yaml); echo "runs/gpu_logs/${y}_${2//,/+}_$3.log"; }
start() {  # start YAML METHODS SEED, unless started already or its seed's base is being trained by another
  local yaml=$1 methods=$2 seed=$3 log
  log=$(log_of "$yaml" "$methods" "$seed")
  [ -e "$log" ] && return
  if [ ! -e "$(out_of "$yaml")/base/seed$seed/results.json" ] && \
     ls runs/gpu_logs/"$(basename "$yaml" .yaml)"_*_"$seed".log >/dev/null 2>&1; then
    return
  fi
  echo "start $yaml $methods seed $seed"
  setsid nohup $PY -m recstudio_rsir.cli suite "$yaml" --device "${DEVICE:-cuda:0}" --num_threads 2 \
    --seeds "$seed" --methods "$methods" --quiet > "$log" 2>&1 < /dev/null &
  echo $! > "${log%.log}.pid"
}
running() {  # how many of the jobs started (by this call or an earlier one) are alive
  local n=0 f
  for f in runs/gpu_logs/*.pid; do
    [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && n=$((n + 1))
  done
  echo $n
}
launch() {
  local job
  for job in $JOBS; do
    IFS=: read -r yaml methods seed <<< "$job"
    start "$yaml" "$methods" "$seed"
  done
}
progress() {
  local job yaml f done fin
  for yaml in $(for job in $JOBS; do echo "${job%%:*}"; done | sort -u); do
    for f in "$(out_of "$yaml")"/*/seed*; do
      [ -d "$f" ] || continue
      done=$(ls -d "$f"/round_*/metrics.json 2>/dev/null | wc -l)
      fin=""; [ -e "$f/results.json" ] && fin=" finished"
      echo "  $f: ${done} round(s) with metrics${fin}"
    done
  done
}
t0=$(date +%s)
launch
while :; do
  sleep "${POLL:-30}"
  launch
  el=$(( $(date +%s) - t0 ))
  alive=$(running)
  if (( el % 120 < ${POLL:-30} )) || (( alive == 0 )) || (( el >= WATCH )); then
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
