#!/usr/bin/env bash
# Test metrics of each backbone trained alone (no augmentation) on one dataset, one stated regime:
# user regime (one row per user, every position, sampled softmax over 256 negatives), batch 256,
# lr 0.001, early stopping on validation NDCG@20 with patience 5, seed 2022, each model's default
# hyper-parameters (RecStudio's for SASRec, recstudio_rsir/model_configs/*.yaml for CL4SRec and HSTU).
#   bash benchmarks/backbones.sh [OUT_DIR] [MODELS...]
# A finished model (its results.json exists) is not trained again.
set -euo pipefail
OUT=${1:-runs/backbones}
shift || true
MODELS=${*:-SASRec CL4SRec HSTU}
DATA=${DATA:-../shared/data/seqrec/Beauty.txt.gz}
DEVICE=${DEVICE:-cpu}
for m in $MODELS; do
  if [ ! -f "$OUT/$m/results.json" ]; then
    python run_recstudio.py -m "$m" -d "$DATA" --epochs 200 --patience 5 --seed 2022 --device "$DEVICE" \
        --quiet --output "$OUT/$m"
  fi
done
python - "$OUT" $MODELS <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
print('| backbone | NDCG@10 | Recall@10 | NDCG@20 | Recall@20 | epochs (best) | s/epoch | wall |')
print('|---|---|---|---|---|---|---|---|')
for n in names:
    res = json.load(open(f'{out}/{n}/results.json'))
    r = res['rounds'][0]
    m = json.load(open(f'{out}/{n}/round_0/metrics.json'))
    print(f"| {n} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['ndcg@20']:.4f} | {r['recall@20']:.4f} | "
          f"{r['epochs_run']} ({r['best_epoch']}) | {m['train']['seconds_per_epoch']:.1f} | {res['wall_seconds']:.0f}s |")
pop = res['popularity']['test']
print(f"| popularity | {pop['ndcg@10']:.4f} | {pop['recall@10']:.4f} | {pop['ndcg@20']:.4f} | {pop['recall@20']:.4f} | | | |")
PY
