"""Your own data: a CSV of interactions (user,item,timestamp) through RSIR to the report and plots.

    python examples/own_csv.py [--csv my_interactions.csv] [--quick] [--output runs/example_own_csv]

Without --csv, a CSV is written from the embedded dataset, the miniature of Beauty/Toys (shuffled
rows, so the timestamps decide the order).  The run folder then holds report.md and plots/*.png.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import example_args  # noqa: E402
from recstudio_rsir import SelfImprovingTrainer, write_report  # noqa: E402
from recstudio_rsir.data import make_miniature  # noqa: E402


def write_demo_csv(path):
    rows = [(u, i, 1_600_000_000 + 3600 * int(t)) for u, s in make_miniature(0).items() for i, t in s]
    order = np.random.default_rng(0).permutation(len(rows))
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        f.write('user,item,timestamp\n')
        f.writelines(f'{rows[k][0]},{rows[k][1]},{rows[k][2]}\n' for k in order)
    return path


if __name__ == '__main__':
    args = example_args(__doc__, 'runs/example_own_csv',
                        extra=lambda p: p.add_argument('--csv', help='user,item,timestamp file (default: a demo file)'))
    csv = args.csv or write_demo_csv(os.path.join(args.output + '_data', 'interactions.csv'))
    result = SelfImprovingTrainer('SASRec', csv, augment='rsir', output=args.output,
                                  config_dict={'train': args.train, 'model': args.model, 'rsir': {'rounds': 1}}).fit()
    print(result.table())
    print(f'report: {write_report(args.output)}')
