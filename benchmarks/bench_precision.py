#!/usr/bin/env python
"""Training speed and early accuracy under ``train.precision`` / ``train.compile`` (issue #15 item 3).

    python benchmarks/bench_precision.py --epochs 3 --json runs/bench_precision.json
    python benchmarks/bench_precision.py --device cuda --epochs 5                    # on a GPU

SASRec, user regime, Beauty (the shared file), one initialisation (seed 2022) trained for --epochs
epochs under each setting: fp32, bf16 (autocast), fp32 + torch.compile, bf16 + torch.compile.  Reports
the first epoch (which holds the compilation), the median of the later epochs, and the validation
NDCG@20 and training loss after the last epoch (the same data order and negatives in every setting, so
differences are the numerics').  Full-length runs for the test metrics are the evidence suites' job.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recstudio_rsir import config as C, host  # noqa: E402
from recstudio_rsir.algorithm import loop, training  # noqa: E402

SETTINGS = {'fp32': {}, 'bf16': {'precision': 'bf16'}, 'fp32+compile': {'compile': True},
            'bf16+compile': {'precision': 'bf16', 'compile': True}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--data', default=os.path.join('..', 'shared', 'data', 'seqrec', 'Beauty.txt.gz'))
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--settings', default=','.join(SETTINGS))
    ap.add_argument('--json')
    a = ap.parse_args()
    host.apply_shims()
    torch.set_num_threads(a.threads)
    tmp = tempfile.mkdtemp(prefix='bench-precision-')
    try:
        cfg = C.resolve(flags={'device': a.device, 'epochs': a.epochs, 'patience': a.epochs},
                        top={'model_name': 'SASRec', 'dataset': a.data, 'output': tmp})
        ex = loop.Experiment(cfg, tmp)
        tr, va, _ = ex.splits([])
        env = host.environment(ex.device)
        out = {'data': a.data, 'device': a.device, 'threads': a.threads, 'epochs': a.epochs,
               'gpu': env['gpu'], 'environment': env, 'settings': {}}
        for name in a.settings.split(','):
            torch.manual_seed(2022)
            model = ex.new_model(tr)
            t = dict(cfg['train'], **SETTINGS[name])
            s = training.fit(model, tr, va, t, os.path.join(tmp, name), ex.device)
            h = s['history']
            rec = {'first_epoch_s': h[0]['train_seconds'],
                   'later_epoch_median_s': statistics.median(x['train_seconds'] for x in h[1:]) if len(h) > 1 else None,
                   'last_loss': h[-1]['loss'], 'last_val_ndcg@20': h[-1]['val_ndcg@20']}
            out['settings'][name] = rec
            print(f"{name:>13}: first epoch {rec['first_epoch_s']:7.1f} s, "
                  f"later epochs {rec['later_epoch_median_s'] or 0:6.1f} s "
                  f"(median), loss {rec['last_loss']:.4f}, val NDCG@20 {rec['last_val_ndcg@20']:.4f}", flush=True)
        if a.json:
            os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
            with open(a.json, 'w') as f:
                json.dump(out, f, indent=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
