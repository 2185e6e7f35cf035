#!/usr/bin/env python
"""One line per method of a suite folder: validation and test metrics of its last round beside the
diagnostics of the rows it added (issue #16 item 3: why a setting helps or not).

    python benchmarks/grid_diagnostics.py runs/grid_beauty_p20 [--seed 2022] [--base base]

Reads only ``<method>/seed<N>/results.json`` and ``round_1/generation.json`` (JSON, never pickles);
works on a run folder or on its kept copy under ``benchmarks/results/``.  Columns: val NDCG@20 (what
selects), test NDCG@10 / Recall@10 and their change vs ``--base``, training rows, acceptance, the
share of synthetic interactions (seed prefixes included) on the row's own user's items, the mean
training count of synthetic vs real interactions' items and the top-10% items' share of each.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from recstudio_rsir.atomic import read_json          # noqa: E402  (a damaged file is one line)
from recstudio_rsir.records import RunLayout          # noqa: E402


def rows(folder, seed):
    out = {}
    for method in sorted(os.listdir(folder)):
        lay = RunLayout(os.path.join(folder, method, f'seed{seed}'))
        if not os.path.exists(lay.results):
            continue
        gen = read_json(lay.generation(1)) if os.path.exists(lay.generation(1)) else {}
        out[method] = (read_json(lay.results)['rounds'][-1], gen)
    return out


def table(folder, seed, base='base'):
    found = rows(folder, seed)
    if base not in found:
        raise SystemExit(f'{folder}: no finished {base}/seed{seed}/results.json to compare against')
    b = found[base][0]
    lines = ['| method | val NDCG@20 | test NDCG@10 | Δ | test Recall@10 | Δ | train rows | acceptance | on own items '
             '| popularity synthetic / real | top-10% share synthetic / real |', '|' + '---|' * 11]
    order = sorted(found, key=lambda m: -found[m][0]['val']['ndcg@20'])
    for m in order:
        last, gen = found[m]
        d = gen.get('diagnostics') or {}
        pop = (f"{d['popularity_mean_synthetic'] / d['popularity_mean_real']:.2f}x" if d else '')
        top = (f"{d['top_items_share_synthetic']:.3f} / {d['top_items_share_real']:.3f}" if d else '')
        acc = f"{gen['acceptance_rate']:.1%}" if 'acceptance_rate' in gen else ''
        own = f"{d['own_history_share']:.1%}" if d else ''
        lines.append(
            f"| {m} | {last['val']['ndcg@20']:.4f} | {last['ndcg@10']:.4f} | {last['ndcg@10'] / b['ndcg@10'] - 1:+.1%} "
            f"| {last['recall@10']:.4f} | {last['recall@10'] / b['recall@10'] - 1:+.1%} | {last['train_sequences']:,} "
            f"| {acc} | {own} | {pop} | {top} |")
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('folder')
    ap.add_argument('--seed', type=int, default=2022)
    ap.add_argument('--base', default='base')
    a = ap.parse_args()
    print(table(a.folder, a.seed, a.base))


if __name__ == '__main__':
    main()
