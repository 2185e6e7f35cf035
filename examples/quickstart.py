"""Quickstart: SASRec + one RSIR round on the embedded dataset, through the Python API.

    python examples/quickstart.py [--quick] [--output runs/example_quickstart]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone

from _common import example_args  # noqa: E402
from recstudio_rsir import SelfImprovingTrainer  # noqa: E402

args = example_args(__doc__, 'runs/example_quickstart')
trainer = SelfImprovingTrainer(
    model='SASRec', dataset='embedded', output=args.output,
    config_dict={'augment': 'rsir', 'train': args.train, 'model': args.model,
                 'rsir': {'rounds': 1, 'm': 5, 'p': 0.5, 'tau': 20}},
    callbacks=[lambda r: print(f'-- round {r.round} done: test NDCG@10 {r.test["ndcg@10"]:.4f}, '
                               f'{r.train_sequences} training rows')])
result = trainer.fit()
print(result.table())

best = result.best                                   # chosen on validation NDCG@20, never on test
print(f'best round on validation: {best.round} (val NDCG@20 {best.val["ndcg@20"]:.4f})')
model = trainer.round_model(best.round)              # a RecStudio model with that round's best weights
print(f'model: {type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters')
rows = result.rounds[1].synthetic()                  # the sequences round 1 added (item ids)
gen = result.rounds[1].generation
print(f'round 1 added {len(rows)} rows (acceptance {gen["acceptance_rate"]:.1%}); first: {rows[0]}')
