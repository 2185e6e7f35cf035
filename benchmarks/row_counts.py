"""Issue #16 item 4: why does round 1 add 3-10x the paper's rows?  Generates round 1 from one trained
base model under each generation rule (and tau) and counts trajectories, accepted steps, rows kept and
rows dropped (too short / duplicate), without training anything.

    python benchmarks/row_counts.py --run runs/evidence_beauty_p20/base/seed2022 \
        --json benchmarks/results/row_counts_beauty.json

--run: a finished run folder (round 0 trained); its config.yaml gives dataset, model and rsir options.
Rules (see README, rsir options): keep_failed_step (the authors' code keeps the step that fails the
check), target_items: history (the authors' code takes targets and own pool from each training row
without its last item), dedup: generated (the authors' code de-duplicates generated rows among
themselves only).  The paper's Table 4 (SASRec) adds +10,321 rows on Beauty and +2,316 on Toys.
"""
import argparse
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from recstudio_rsir import config as C  # noqa: E402
from recstudio_rsir.algorithm import loop, training  # noqa: E402
from recstudio_rsir.algorithm.augmenters import get_augmenter  # noqa: E402
from recstudio_rsir.atomic import read_json, write_json  # noqa: E402
from recstudio_rsir.records import RunLayout  # noqa: E402

AUTHORS = {'keep_failed_step': True, 'target_items': 'history', 'dedup': 'generated'}
VARIANTS = [
    ('default (tau 20)', {}),
    ('keep_failed_step', {'keep_failed_step': True}),
    ('target_items history', {'target_items': 'history'}),
    ('dedup generated', {'dedup': 'generated'}),
    ("authors' rules (all three)", AUTHORS),
    ('tau 10', {'tau': 10}),
    ('tau 5', {'tau': 5}),
    ('tau 3', {'tau': 3}),
    ('tau 1', {'tau': 1}),
    ("authors' rules, tau 5", dict(AUTHORS, tau=5)),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--run', required=True)
    p.add_argument('--json')
    p.add_argument('--only', help='comma list of variant numbers (1-based)')
    p.add_argument('--num_threads', type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.num_threads)
    lay = RunLayout(a.run)
    cfg = C.resolve(config_path=lay.config, top={'output': a.run})
    ex = loop.Experiment(cfg, a.run)
    train, _, _ = ex.splits([])
    model = ex.new_model(train)
    model.load_state_dict(training.load_checkpoint(loop.checkpoint_path(lay.round_dir(0), read_json(lay.metrics(0))))
                          ['model'])
    model.eval()
    picked = [int(x) - 1 for x in a.only.split(',')] if a.only else range(len(VARIANTS))
    rows = []
    for i in picked:
        name, over = VARIANTS[i]
        ex.cfg = copy.deepcopy(cfg)
        ex.cfg['augment'] = 'rsir'
        ex.cfg['rsir'].update(over)
        C.validate(ex.cfg)
        t0 = time.time()
        new, _, info = loop.augment_round(get_augmenter('rsir'), ex, model, ex.real_train, [], 1, False)
        row = {'variant': name, 'overrides': over, 'sources': info['sources'], 'trajectories': info['trajectories'],
               'steps_tried': info['steps_tried'], 'accepted': info['accepted'],
               'acceptance_rate': info['acceptance_rate'], 'kept': info['kept'],
               'dropped_short': info['dropped_short'], 'dropped_duplicate': info['dropped_duplicate'],
               'mean_length': info['mean_length'], 'seconds': time.time() - t0}
        rows.append(row)
        print(f"{name:28s} kept {row['kept']:6d}  short {row['dropped_short']:6d}  dup {row['dropped_duplicate']:6d}  "
              f"accept {row['acceptance_rate']:.1%}  mean len {row['mean_length']:.2f}  ({row['seconds']:.0f}s)",
              flush=True)
    out = {'run': a.run, 'dataset': ex.dataset_desc, 'model': cfg['model_name'], 'seed': cfg['train']['seed'],
           'real_rows': len(ex.real_train), 'rsir': cfg['rsir'], 'variants': rows,
           'command': 'python benchmarks/row_counts.py ' + ' '.join(sys.argv[1:])}
    if a.json:
        write_json(a.json, out)
    print('\n| rule | rows kept | too short | duplicates | acceptance | mean length |\n|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['variant']} | {r['kept']:,} | {r['dropped_short']:,} | {r['dropped_duplicate']:,} | "
              f"{r['acceptance_rate']:.1%} | {r['mean_length']:.2f} |")


if __name__ == '__main__':
    main()
