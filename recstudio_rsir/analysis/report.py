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
from ..records import RunLayout, RunResult, SuiteLayout

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


def _series(summary, split_seeds=True):
    """label -> rows over rounds: the lines of a per-round plot, round 0 = base.

    With ``split_seeds`` (the test-metric plot) every line averages one set of seeds from round 0 to its
    last round: a method's first line covers the rounds that all the seeds of its round 1 reached, and a
    later round reached by fewer seeds (a run still going, or stopped) starts a line of its own over those
    seeds, every earlier round restricted to them.  Without it (the data and generation plots, whose
    statistics are kept as means, without per-seed values) a method is one line over all its rounds.
    Either way a line starts from base over the seeds of its first row and is labelled with them when
    they are fewer than base's, as in ``summary.md``."""
    rows = summary['rows']
    base = [r for r in rows if r['method'] == 'base']
    n_seeds = len(base[0]['seeds']) if base else max((len(r['seeds']) for r in rows), default=0)
    by_method = {}
    for r in rows:
        if r['method'] != 'base':
            by_method.setdefault(r['method'], []).append(r)
    out = {}
    for method, rs in by_method.items():
        if not split_seeds:
            out[S.row_label(rs[0], n_seeds)] = ([_restrict(base[0], rs[0]['seeds'])] if base else []) + rs
            continue
        for seeds in dict.fromkeys(tuple(r['seeds']) for r in rs):      # in order of rounds, no repeats
            line = [_restrict(r, seeds) for r in rs if set(seeds) <= set(r['seeds'])]
            out[S.row_label({'method': method, 'seeds': list(seeds)}, n_seeds)] = \
                ([_restrict(base[0], seeds)] if base else []) + line
    return out or ({'base': base} if base else {})


def _restrict(row, seeds):
    """A summary row restricted to ``seeds`` (mean / sample std of each test metric over them)."""
    seeds = list(seeds)
    if list(row['seeds']) == seeds or not set(seeds) <= set(row['seeds']):
        return row                      # the same seeds, or seeds the row lacks (the summary has no change there)
    out = dict(row, seeds=seeds)
    for m in METRICS:
        out[m] = S.metric_cell(S.seed_values(row, m, seeds))
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


def _styles(series):
    """label -> matplotlib style: one colour per method in every plot of a report, a method's lines over
    fewer seeds dashed."""
    methods = list(dict.fromkeys(rs[-1]['method'] for rs in series.values()))
    seen, out = set(), {}
    for label, rs in series.items():
        method = rs[-1]['method']
        out[label] = {'color': f'C{methods.index(method) % 10}', 'linestyle': '--' if method in seen else '-'}
        seen.add(method)
    return out


def _two_panels(series, panels, title, path, errors=False):
    """One figure, two panels side by side; ``panels`` = [(value(row), y label)]; one line per entry of
    ``series`` (see ``_series``) over rounds (error bars = std over seeds when ``errors``)."""
    plt = _pyplot()
    styles = _styles(series)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for ax, (value, label) in zip(axes, panels):
        for name, rs in series.items():
            x, y = [r['round'] for r in rs], [value(r)[0] for r in rs]
            err = [value(r)[1] for r in rs] if errors else None
            ax.errorbar(x, y, yerr=err, marker='o', capsize=3, label=name, **styles[name])
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
    _two_panels(_series(summary, split_seeds=False),
                [(lambda r: (r['density'], 0), 'density of the training rows'),
                 (lambda r: (r['apen'], 0), 'mean ApEn (m=2, r=0)')],
                'Training data per round', path)


def plot_generation(summary, path):
    plt = _pyplot()
    full = _series(summary, split_seeds=False)
    styles = _styles(full)
    series = {n: [r for r in rs if r['round'] > 0] for n, rs in full.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for name, rs in series.items():
        acc = [(r['round'], r['acceptance_rate']) for r in rs if r.get('acceptance_rate') is not None]
        if acc:
            axes[0].plot(*zip(*acc), marker='o', label=name, **styles[name])
        own = [(r['round'], r['diagnostics']['own_history_share']) for r in rs if r.get('diagnostics')]
        if own:
            axes[1].plot(*zip(*own), marker='o', label=name, **styles[name])
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
    lay = SuiteLayout(folder)       # report.md and plots/ have the same names in a run folder
    plots = lay.plots
    parts = []
    if os.path.exists(lay.matrix):
        matrix = read_json(lay.matrix)
        os.makedirs(plots, exist_ok=True)
        plot_matrix(matrix, os.path.join(plots, 'teacher_student.png'))
        parts += ['# Teacher x student (one RSIR round)', '',
                  f"Seeds {', '.join(map(str, matrix['seeds']))}. Cell: relative change of test NDCG@10 / Recall@10 of "
                  "the student after one round on data its teacher generated, vs the student without augmentation "
                  '(mean over seeds).', '', _matrix_table(matrix), '',
                  '![teacher x student](plots/teacher_student.png)', '']
        for s in matrix['students']:
            parts += [f'## Student {s}', '', S.format_summary(read_json(lay.student(s).summary_json))]
        return _write(lay.report, parts)
    if os.path.exists(lay.suite):
        summary = S.write_summary(folder)
        meta = read_json(lay.suite)
        title = {'grid': 'Hyper-parameter grid', 'suite': 'Methods x seeds'}.get(meta.get('kind'), 'Suite')
        common = meta.get('common', {})
        parts += [f"# {title}: {common.get('model_name', '')} on {common.get('dataset', '')}", '']
        if meta.get('axes'):
            parts += ['Grid axes: ' + '; '.join(f"{k} in {v}" for k, v in meta['axes']) +
                      '. Pick settings by the validation columns of `summary.json` (test is for reporting).', '']
    elif os.path.exists(RunLayout(folder).results):
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
    return _write(lay.report, parts)


def _write(path, parts):
    write_text(path, '\n'.join(parts) + '\n')
    return path

