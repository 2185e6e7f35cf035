#!/usr/bin/env python
"""Per round of one method of a suite folder: the summary's figures over seeds beside each seed's
(issue #16 item 2: do the rounds help on every seed, or on the mean alone?).

    python benchmarks/rounds_per_seed.py benchmarks/results/rounds_cpu_toys [--method rsir] [--label Toys]

One markdown line per round (round 0 = ``base``), columns: the seeds that reached the round, mean
training rows, test NDCG@10 and Recall@10 (mean ± sample std), change of the mean vs base over the same
seeds and the paired t-test p across them (both from the suite's own summary,
:func:`recstudio_rsir.analysis.suite.summarize_runs`), then per seed, in the order of the seeds column:
change of NDCG@10 and Recall@10 vs that seed's base, validation NDCG@20, acceptance of the generated
steps and the mean training count of the synthetic interactions' items over the real ones'.  Several
folders (one line group each, ``--label`` once per folder) make one table.  Reads only the JSON files
of the runs (``results.json``, or the round files of a run that stopped mid-way); works on a run
folder or on its kept copy under ``benchmarks/results/``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from recstudio_rsir.analysis import suite as S      # noqa: E402
from recstudio_rsir.atomic import read_json          # noqa: E402  (a damaged file is one line)
from recstudio_rsir.errors import UserError          # noqa: E402
from recstudio_rsir.records import SuiteLayout        # noqa: E402

HEADER = ('| file | round | seeds | training rows (mean) | NDCG@10 | Recall@10 | Δ of the mean vs base '
          '(NDCG@10 / Recall@10) | paired p (NDCG@10 / Recall@10) | Δ NDCG@10 per seed | Δ Recall@10 per seed '
          '| val NDCG@20 per seed | acceptance per seed | synthetic popularity vs real per seed |')


def _both(a, b):
    return f'{a} / {b}' if a or b else ''


def _per_seed(values, fmt):
    return ' / '.join(fmt(v) for v in values)


def lines(folder, method='rsir', label=None):
    """The table lines of ``method`` in the suite folder ``folder`` (its base row first)."""
    suite_json = SuiteLayout(folder).suite
    if not os.path.exists(suite_json):
        raise UserError(f'{folder}: no suite.json (expected a folder written by `rsir suite`)')
    meta = read_json(suite_json)
    runs, _ = S.load_runs(folder, meta)
    if method not in runs:
        have = ', '.join(n for n in runs if n != 'base') or 'none'
        raise UserError(f'{folder}: no run of method {method!r} (methods with runs: {have})')
    if 'base' not in runs:
        raise UserError(f'{folder}: no base run to compare against')
    summary = S.summarize_runs(runs, [method], meta['seeds'])
    label = label or os.path.basename(os.path.normpath(folder))
    out = []
    for row in summary['rows']:
        k, seeds = row['round'], row['seeds']
        this = [runs[row['method']][s]['rounds'][k] for s in seeds]
        base = [runs['base'][s]['rounds'][0] for s in seeds]
        cells = [label, '0 (base)' if k == 0 else str(k), ', '.join(map(str, seeds)),
                 f"{row['train_sequences']:,.0f}", S.format_cell(row['ndcg@10']), S.format_cell(row['recall@10'])]
        if k == 0:
            cells += ['', '', '', '', _per_seed(this, lambda r: f"{r['val']['ndcg@20']:.4f}"), '', '']
        else:
            gens = [r['generation'] or {} for r in this]
            diag = [g.get('diagnostics') or {} for g in gens]
            cells += [f"{row['ndcg@10']['change_vs_base']:+.1%} / {row['recall@10']['change_vs_base']:+.1%}",
                      _both(S.format_p(row['ndcg@10']['p_vs_base']), S.format_p(row['recall@10']['p_vs_base'])),
                      ' / '.join(f"{r['ndcg@10'] / b['ndcg@10'] - 1:+.1%}" for r, b in zip(this, base)),
                      ' / '.join(f"{r['recall@10'] / b['recall@10'] - 1:+.1%}" for r, b in zip(this, base)),
                      _per_seed(this, lambda r: f"{r['val']['ndcg@20']:.4f}"),
                      _per_seed(gens, lambda g: f"{g['acceptance_rate']:.1%}" if 'acceptance_rate' in g else '-'),
                      _per_seed(diag, lambda d: f"{d['popularity_mean_synthetic'] / d['popularity_mean_real']:.2f}x"
                                if d.get('popularity_mean_real') else '-')]
        out.append('| ' + ' | '.join(cells) + ' |')
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('folders', nargs='+', help='suite folders (run folders or kept copies)')
    ap.add_argument('--method', default='rsir', help='the method whose rounds to list (default rsir)')
    ap.add_argument('--label', action='append', help='the first column of a folder\'s lines (once per folder; '
                    'default: the folder name)')
    a = ap.parse_args(argv)
    if a.label and len(a.label) != len(a.folders):
        ap.error(f'--label given {len(a.label)} time(s) for {len(a.folders)} folder(s); '
                 'give it once per folder or not at all')
    labels = a.label or [None] * len(a.folders)
    try:
        body = [ln for f, lab in zip(a.folders, labels) for ln in lines(f, a.method, lab)]
    except UserError as e:
        sys.exit(f'error: {e}')
    print(HEADER)
    print('|' + '---|' * HEADER.count(' | ') + '---|')
    print('\n'.join(body))


if __name__ == '__main__':
    main()
