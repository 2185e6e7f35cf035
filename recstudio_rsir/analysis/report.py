"""``rsir report DIR``: a markdown report with per-round tables and PNG plots for one run folder,
a suite folder (methods x seeds, grids) or a teacher x student matrix folder.

Writes ``DIR/report.md`` and ``DIR/plots/*.png`` (each under a temporary name, then renamed):

* ``metrics_per_round.png``  NDCG@10 and Recall@10 per round, one line per method (mean ± std)
* ``data_per_round.png``     density and mean ApEn of the training rows per round
* ``generation_per_round.png``  RSIR acceptance rate and own-history share of synthetic rows per round
* ``teacher_student.png``    heatmap of the relative NDCG@10 change (matrix folders)
"""
import os

import numpy as np

from . import suite as S
from ..atomic import atomic_path, read_json, write_text
from ..errors import UserError
from ..records import RunLayout, RunResult

METRICS = S.METRICS


def _single_run_summary(folder):
    """A run folder as a one-method summary: its round 0 is the base row."""
    res = RunResult.load(RunLayout(folder).results).to_dict()      # a damaged file: one line
    name = res['augment'] if res['augment'] != 'rsir' or res.get('fidelity') != 'off' else 'rsir_fidelity_off'
    runs = {'base': {res['seed']: res}}
    if res['augment'] != 'none':
        runs[name] = {res['seed']: res}
    summary = S.summarize_runs(runs, [n for n in runs if n != 'base'], [res['seed']], kind='run')
    summary['title'] = f"{res['model']} on {res['dataset']}, augment {res['augment']}, seed {res['seed']}"
    return summary


def _series(summary):
    """label -> rows over rounds, round 0 = the base row over the seeds of the method's first row.

    A method run on fewer seeds than base is labelled with its seeds, as in ``summary.md``, and its
    round 0 averages base over those seeds only: a line never starts from other seeds' base."""
    rows = summary['rows']
    base = [r for r in rows if r['method'] == 'base']
    out, label_of = {}, {}
    for r in rows:                          # a method's rows come together, round 1 first
        if r['method'] == 'base':
            continue
        if r['method'] not in label_of:
            label = S.row_label(r, len(base[0]['seeds'])) if base else r['method']
            label_of[r['method']] = label
            out[label] = [_base_over(base[0], r['seeds'])] if base else []
        out[label_of[r['method']]].append(r)
    return out or ({'base': base} if base else {})


def _base_over(row, seeds):
    """The base summary row restricted to ``seeds`` (mean / sample std of each test metric)."""
    if list(row['seeds']) == list(seeds) or not set(seeds) <= set(row['seeds']):
        return row                      # the same seeds, or seeds base lacks (the summary has no change there)
    out = dict(row, seeds=list(seeds))
    for m in METRICS:
        out[m] = S.metric_cell([row[m]['values'][row['seeds'].index(s)] for s in seeds])
    return out


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported when a plot is drawn, not at start-up)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _savefig(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=110, bbox_inches='tight')


def _colour(names, name):
    """The same colour for a method in every plot of a report."""
    return f'C{names.index(name) % 10}'


def _two_panels(series, panels, title, path, errors=False):
    """One figure, two panels side by side; ``panels`` = [(value(row), y label)]; one line per method
    over rounds (error bars = std over seeds when ``errors``)."""
    plt = _pyplot()
    summary_names = list(series)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, (value, label) in zip(axes, panels):
        for name, rs in series.items():
            x, y = [r['round'] for r in rs], [value(r)[0] for r in rs]
            err = [value(r)[1] for r in rs] if errors else None
            ax.errorbar(x, y, yerr=err, marker='o', capsize=3, label=name, color=_colour(summary_names, name))
        ax.set_xlabel('round')
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r['round'] for rs in series.values() for r in rs}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    _savefig(fig, path)
    plt.close(fig)


def plot_metrics(summary, path):
    _two_panels(_series(summary), [(lambda r: (r['ndcg@10']['mean'], r['ndcg@10']['std']), 'test NDCG@10'),
                                   (lambda r: (r['recall@10']['mean'], r['recall@10']['std']), 'test Recall@10')],
                'Test metrics per round (round 0 = backbone without augmentation)', path, errors=True)


def plot_data(summary, path):
    _two_panels(_series(summary), [(lambda r: (r['density'], 0), 'density of the training rows'),
                                   (lambda r: (r['apen'], 0), 'mean ApEn (m=2, r=0)')],
                'Training data per round', path)


def plot_generation(summary, path):
    plt = _pyplot()
    full = _series(summary)
    names = list(full)
    series = {n: [r for r in rs if r['round'] > 0] for n, rs in full.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for name, rs in series.items():
        acc = [(r['round'], r['acceptance_rate']) for r in rs if r.get('acceptance_rate') is not None]
        if acc:
            axes[0].plot(*zip(*acc), marker='o', label=name, color=_colour(names, name))
        own = [(r['round'], r['diagnostics']['own_history_share']) for r in rs if r.get('diagnostics')]
        if own:
            axes[1].plot(*zip(*own), marker='o', label=name, color=_colour(names, name))
    rounds = sorted({r['round'] for rs in series.values() for r in rs})
    axes[0].set_ylabel('RSIR steps accepted / tried')
    axes[1].set_ylabel("share of synthetic interactions\non the source user's own items")
    for ax in axes:
        ax.set_xlabel('round')
        ax.set_xticks(rounds)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle('Generation per round')
    _savefig(fig, path)
    plt.close(fig)


def plot_matrix(matrix, path):
    plt = _pyplot()
    st, te = matrix['students'], matrix['teachers']
    val = np.array([[matrix['change'].get(s, {}).get(t, {}).get('ndcg@10') or np.nan for s in st] for t in te])
    fig, ax = plt.subplots(figsize=(1.6 * len(st) + 2, 1.3 * len(te) + 1.5))
    lim = np.nanmax(np.abs(val)) if np.isfinite(val).any() else 1.0
    im = ax.imshow(val * 100, cmap='RdBu', vmin=-lim * 100, vmax=lim * 100)
    ax.set_xticks(range(len(st)), st)
    ax.set_yticks(range(len(te)), te)
    ax.set_xlabel('student (trained)')
    ax.set_ylabel('teacher (generates)')
    for i in range(len(te)):
        for j in range(len(st)):
            if np.isfinite(val[i, j]):
                dark = abs(val[i, j]) > 0.6 * lim
                ax.text(j, i, f'{val[i, j]:+.1%}', ha='center', va='center', fontsize=9,
                        color='white' if dark else 'black')
    fig.colorbar(im, ax=ax, label='NDCG@10 change vs the student without augmentation (%)')
    ax.set_title('Teacher x student: one RSIR round')
    _savefig(fig, path)
    plt.close(fig)


def _per_round_table(summary):
    lines = ['| method | round | train rows | interactions | density | sparsity | ApEn | 1/ApEn | synthetic rows | '
             'accept | own-history share | popularity (synthetic / real) | top-10% items share (synthetic / real) | '
             'item coverage (synthetic) |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in summary['rows']:
        d = r.get('diagnostics') or {}
        acc = r.get('acceptance_rate')

        def f(x, fmt):
            return '' if x is None else format(x, fmt)
        pop = (f"{d['popularity_mean_synthetic'] / d['popularity_mean_real']:.2f}x"
               if d.get('popularity_mean_real') else '')
        top = (f"{d['top_items_share_synthetic']:.1%} / {d['top_items_share_real']:.1%}" if d else '')
        lines.append(f"| {r['method']} | {r['round']} | {f(r['train_sequences'], '.0f')} | "
                     f"{f(r['interactions'], '.0f')} | {f(r['density'], '.6f')} | "
                     f"{f(1 - r['density'] if r['density'] is not None else None, '.6f')} | {f(r['apen'], '.4f')} | "
                     f"{f(r['apen_reciprocal'], '.2f')} | {f(r.get('synthetic_rows'), '.0f')} | {f(acc, '.1%')} | "
                     f"{f(d.get('own_history_share'), '.1%')} | {pop} | {top} | "
                     f"{f(d.get('coverage_synthetic'), '.1%')} |")
    return '\n'.join(lines)


def _matrix_table(matrix):
    st = matrix['students']
    lines = ['| teacher \\ student | ' + ' | '.join(st) + ' |', '|---' * (len(st) + 1) + '|']
    for t in matrix['teachers']:
        cells = []
        for s in st:
            c = matrix['change'].get(s, {}).get(t, {})
            cells.append('' if c.get('ndcg@10') is None else f"{c['ndcg@10']:+.2%} / {c['recall@10']:+.2%}")
        lines.append(f'| {t} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_report(folder):
    """Write ``folder/report.md`` and its plots; returns the report path."""
    if not os.path.isdir(folder):
        raise UserError(f'rsir report {folder}: no such folder')
    plots = os.path.join(folder, 'plots')
    parts = []
    matrix_path = os.path.join(folder, 'matrix.json')
    if os.path.exists(matrix_path):
        matrix = read_json(matrix_path)
        os.makedirs(plots, exist_ok=True)
        plot_matrix(matrix, os.path.join(plots, 'teacher_student.png'))
        parts += ['# Teacher x student (one RSIR round)', '',
                  f"Seeds {', '.join(map(str, matrix['seeds']))}. Cell: relative change of test NDCG@10 / Recall@10 of "
                  "the student after one round on data its teacher generated, vs the student without augmentation "
                  '(mean over seeds).', '', _matrix_table(matrix), '', '![teacher x student](plots/teacher_student.png)',
                  '']
        for s in matrix['students']:
            parts += [f'## Student {s}', '', S.format_summary(read_json(os.path.join(folder, s, 'summary.json')))]
        return _write(folder, parts)
    if os.path.exists(os.path.join(folder, 'suite.json')):
        summary = S.write_summary(folder)
        meta = read_json(os.path.join(folder, 'suite.json'))
        title = {'grid': 'Hyper-parameter grid', 'suite': 'Methods x seeds'}.get(meta.get('kind'), 'Suite')
        common = meta.get('common', {})
        parts += [f"# {title}: {common.get('model_name', '')} on {common.get('dataset', '')}", '']
        if meta.get('axes'):
            parts += ['Grid axes: ' + '; '.join(f"{k} in {v}" for k, v in meta['axes']) +
                      '. Pick settings by the validation columns of `summary.json` (test is for reporting).', '']
    elif os.path.exists(os.path.join(folder, 'results.json')):
        summary = _single_run_summary(folder)
        parts += [f"# {summary['title']}", '']
    else:
        raise UserError(f'rsir report {folder}: neither results.json, suite.json nor matrix.json is there '
                        '(expected an output folder of run_recstudio.py, rsir suite or rsir matrix)')
    if not summary['rows']:
        raise UserError(f'rsir report {folder}: no finished run in this folder yet')
    os.makedirs(plots, exist_ok=True)
    plot_metrics(summary, os.path.join(plots, 'metrics_per_round.png'))
    plot_data(summary, os.path.join(plots, 'data_per_round.png'))
    plot_generation(summary, os.path.join(plots, 'generation_per_round.png'))
    parts += ['## Test metrics', '', S.format_summary(summary), '![metrics per round](plots/metrics_per_round.png)', '',
              '## Training data and generation per round', '',
              'Density = interactions / (users x items); ApEn = mean approximate entropy of the training rows '
              '(m = 2, r = 0), 1/ApEn its reciprocal as the paper reports it; own-history share = synthetic '
              "interactions on items of the row's source user; popularity = mean training count of the items of "
              'synthetic vs real interactions; item coverage = distinct items in the synthetic rows / items.', '',
              _per_round_table(summary), '', '![data per round](plots/data_per_round.png)', '',
              '![generation per round](plots/generation_per_round.png)', '']
    return _write(folder, parts)


def _write(folder, parts):
    path = os.path.join(folder, 'report.md')
    write_text(path, '\n'.join(parts) + '\n')
    return path

