#!/usr/bin/env bash
# Cost per epoch and test NDCG@10 of the two training regimes, SASRec on Beauty (CPU).
#   bash benchmarks/regime_cost.sh [OUT_DIR]
# Both regimes trained to early stopping (patience 5, at most PREFIX_EPOCHS = 200 epochs for prefix;
# one prefix epoch is ~6x the per-user rows), both evaluated with the same full-ranking code.
set -euo pipefail
OUT=${1:-runs/regime_cost}
DATA=${DATA:-../shared/data/seqrec/Beauty.txt.gz}
PREFIX_EPOCHS=${PREFIX_EPOCHS:-200}
python run_recstudio.py -m SASRec -d "$DATA" --train.regime user --epochs 200 --patience 5 \
    --seed 2022 --quiet --output "$OUT/user"
python run_recstudio.py -m SASRec -d "$DATA" --train.regime prefix --epochs "$PREFIX_EPOCHS" --patience 5 \
    --seed 2022 --quiet --output "$OUT/prefix"
python - "$OUT" <<'PY'
import json, sys
for r in ('user', 'prefix'):
    res = json.load(open(f'{sys.argv[1]}/{r}/results.json'))
    row = res['rounds'][0]
    m = json.load(open(f'{sys.argv[1]}/{r}/round_0/metrics.json'))
    print(f"{r:>7}: {m['train']['seconds_per_epoch']:.1f} s/epoch (incl. validation), {row['epochs_run']} epochs, "
          f"best epoch {row['best_epoch']}, test NDCG@10 {row['ndcg@10']:.4f} Recall@10 {row['recall@10']:.4f} "
          f"NDCG@20 {row['ndcg@20']:.4f} Recall@20 {row['recall@20']:.4f}, wall {res['wall_seconds']:.0f}s")
PY
