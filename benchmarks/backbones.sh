#!/usr/bin/env bash
# Test metrics of each backbone trained alone (no augmentation) on one dataset, one stated regime:
# user regime (one row per user, every position, sampled softmax over 256 negatives), batch 256,
# lr 0.001, early stopping on validation NDCG@20 (patience $PATIENCE, default 5), seed 2022, each
# model's default hyper-parameters (RecStudio's for SASRec, recstudio_rsir/model_configs/*.yaml for
# CL4SRec and HSTU).
#   bash benchmarks/backbones.sh [OUT_DIR] [SPEC...]
# A SPEC is a model name, or LABEL="MODEL --flag value ..." for a variant (e.g.
# CL4SRec_last="CL4SRec --model.cl_pooling last").  A finished SPEC (its results.json exists) is not
# trained again.  Environment: DATA, DEVICE (cpu), PATIENCE (5), PARALLEL (0; 1 starts every SPEC at
# once, for a GPU), SEED (2022), EXTRA (more flags for every run, e.g. "--num_threads 1").
set -euo pipefail
OUT=${1:-runs/backbones}
shift || true
[ $# -gt 0 ] || set -- SASRec CL4SRec HSTU
DATA=${DATA:-../shared/data/seqrec/Beauty.txt.gz}
DEVICE=${DEVICE:-cpu}
PATIENCE=${PATIENCE:-5}
PARALLEL=${PARALLEL:-0}
SEED=${SEED:-2022}
LABELS=()
for spec in "$@"; do
  label=${spec%%=*}; args=${spec#*=}
  LABELS+=("$label")
  [ -f "$OUT/$label/results.json" ] && continue
  mkdir -p "$OUT"
  # shellcheck disable=SC2086
  cmd=(python run_recstudio.py -m $args -d "$DATA" --epochs 200 --patience "$PATIENCE" --seed "$SEED"
       --device "$DEVICE" --quiet --output "$OUT/$label" ${EXTRA:-})
  if [ "$PARALLEL" = 1 ]; then "${cmd[@]}" > "$OUT/$label.log" 2>&1 & else "${cmd[@]}"; fi
done
wait
python - "$OUT" "${LABELS[@]}" <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
print('| backbone | NDCG@10 | Recall@10 | NDCG@20 | Recall@20 | epochs (best) | s/epoch | wall |')
print('|---|---|---|---|---|---|---|---|')
res = None
for n in names:
    if not os.path.exists(f'{out}/{n}/results.json'):
        print(f'| {n} | did not finish (see {out}/{n}.log) | | | | | | |')
        continue
    res = json.load(open(f'{out}/{n}/results.json'))
    r = res['rounds'][0]
    m = json.load(open(f'{out}/{n}/round_0/metrics.json'))
    print(f"| {n} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['ndcg@20']:.4f} | {r['recall@20']:.4f} | "
          f"{r['epochs_run']} ({r['best_epoch']}) | {m['train']['seconds_per_epoch']:.1f} | {res['wall_seconds']:.0f}s |")
if res:
    pop = res['popularity']['test']
    print(f"| popularity | {pop['ndcg@10']:.4f} | {pop['recall@10']:.4f} | {pop['ndcg@20']:.4f} | {pop['recall@20']:.4f} | | | |")
PY
