"""Many runs in one folder: methods x seeds (``rsir suite``), hyper-parameter grids (comma lists on
the command line) and the teacher x student matrix (``rsir matrix``), with a summary over seeds.

Folder layout::

    suite.json                 what was run: methods, their overrides, seeds (and grid axes / matrix)
    base/seed<N>/              the backbone without augmentation (round 0 of every method)
    <method>/seed<N>/          one run_recstudio.py output folder per method and seed
    summary.json, summary.md   mean / std over seeds, change vs base, paired t-test across seeds
    report.md, plots/          written by :mod:`recstudio_rsir.report`

Round 0 of every method is the same model as ``base`` (same data, config and seed; training is
deterministic for a seed on one device), so it is trained once per seed and each method's
``round_0/metrics.json`` points at the base checkpoint.  A method may therefore change only
``augment``, ``rsir.*`` and ``aug.*``.  Finished runs (their ``results.json`` holds every round asked
for) are not re-run; an interrupted one resumes where it stopped, and a finished one whose method now
asks for more rounds goes on from its last round.  The summary also shows the finished rounds of a
run that stopped mid-way (a lease that ended, a killed job): each (method, round) row averages the
seeds that reached that round and names them when they are not all the suite's seeds.
"""
import copy
import itertools
import logging
import os
import re
import time

import numpy as np

from .. import config as C
from ..atomic import read_json, run_lock, write_json, write_text
from ..errors import UserError
from ..records import RunLayout, RunResult, SuiteLayout

log = logging.getLogger('recstudio_rsir')

METRICS = ('ndcg@10', 'recall@10', 'ndcg@20', 'recall@20')
METHOD_KEYS = ('augment', 'rsir', 'aug')
SUITE_KEYS = ('output', 'seeds', 'common', 'methods')
NAME = re.compile(r'^[A-Za-z0-9_.=,+-]+$')


# ----------------------------------------------------------------------------- definition

def load_suite(path):
    """(common, methods, seeds, output) of a suite YAML; one-line errors name the file and key."""
    obj = C.load_yaml(path)
    bad = [k for k in obj if k not in SUITE_KEYS]
    if bad:
        raise UserError(f'{path}: unknown key `{bad[0]}`; accepted: {", ".join(SUITE_KEYS)}')
    methods = obj.get('methods')
    if not isinstance(methods, dict) or not methods:
        raise UserError(f'{path}: `methods` must be a mapping of method name -> overrides (augment/rsir/aug)')
    seeds = obj.get('seeds', [2022])
    if not isinstance(seeds, list) or not seeds or not all(C._is_int(s) for s in seeds):
        raise UserError(f'{path}: `seeds` must be a list of integers, got {seeds!r}')
    common = obj.get('common') or {}
    if not isinstance(common, dict):
        raise UserError(f'{path}: `common` must be a mapping (the keys of a --config file)')
    return common, {k: (v or {}) for k, v in methods.items()}, seeds, obj.get('output')


def check_methods(methods, where):
    for name, over in methods.items():
        if name == 'base' or not NAME.match(str(name)):
            raise UserError(f'{where}: method name {name!r} is reserved or has characters other than letters, digits, '
                            '_ . = , + -')
        if not isinstance(over, dict):
            raise UserError(f'{where}: method {name}: overrides must be a mapping')
        bad = [k for k in over if k not in METHOD_KEYS]
        if bad:
            raise UserError(f'{where}: method {name}: `{bad[0]}` cannot differ between methods (round 0 is shared); '
                            f'a method may set only {", ".join(METHOD_KEYS)}')


def resolve_jobs(common, methods, seeds, out, flags=None, top=None, where='suite', check=None, config_path=None):
    """Every run of the suite as a dict (name, seed, cfg, base = the folder whose round 0 it
    shares), base runs first.  All configs are resolved and checked before anything runs."""
    check_methods(methods, where)
    jobs, lay = [], SuiteLayout(out)
    for seed in seeds:
        base_out = lay.run('base', seed).root
        for name, over in [('base', {'augment': 'none'})] + list(methods.items()):
            flags_s = dict(flags or {}, **{'train.seed': seed})
            cfg = C.resolve(config_path=config_path, flags=flags_s,
                            top=dict(top or {}, output=lay.run(name, seed).root),
                            layers=[(f'{where} (common)', common), (f'{where} (method {name})', over)])
            if name != 'base' and cfg['augment'] == 'none':
                raise UserError(f'{where}: method {name}: augment is none (that is the base run)')
            if check:
                check(cfg)
            jobs.append({'name': name, 'seed': seed, 'cfg': cfg, 'base': None if name == 'base' else base_out})
    return jobs


# ----------------------------------------------------------------------------- running

def share_round0(base_out, run_out):
    """Point ``run_out``'s round 0 at the base run's trained model (same data/config/seed); the
    checkpoint path is kept relative, so a suite folder can be moved as a whole."""
    from ..algorithm.loop import checkpoint_path
    src_dir, dst_dir = RunLayout(base_out).round_dir(0), RunLayout(run_out).round_dir(0)
    dst = RunLayout(run_out).metrics(0)
    if not os.path.exists(dst):
        res = read_json(RunLayout(base_out).metrics(0))
        res['checkpoint_in_round'] = os.path.relpath(checkpoint_path(src_dir, res), dst_dir)
        res.pop('checkpoint', None)
        write_json(dst, res)


def _finished(run_out, cfg):
    """The run in ``run_out`` has its ``results.json`` with every round ``cfg`` asks for: a suite whose
    method gains rounds (``rsir.rounds`` may grow in a run folder) continues its finished runs."""
    path = RunLayout(run_out).results
    if not os.path.exists(path):
        return False
    return len(read_json(path)['rounds']) > C.rounds_asked(cfg)


def run_jobs(jobs, progress=False):
    """Run (or skip when finished) every job in order; a job with a ``base`` folder takes its
    round 0 from there.  A run being run by another live process (``rsir suite --methods`` in two
    shells) is an error, not a second writer."""
    import torch
    from ..api import SelfImprovingTrainer
    for i, job in enumerate(jobs):
        run_out = job['cfg']['output']
        if _finished(run_out, job['cfg']):
            continue
        log.info('[%d/%d] %s seed %d -> %s', i + 1, len(jobs), job['name'], job['seed'], run_out)
        with run_lock(run_out):
            if job['base']:
                share_round0(job['base'], run_out)
            cfg = copy.deepcopy(job['cfg'])
            torch.set_num_threads(int(cfg['train'].get('num_threads') or os.cpu_count()))
            SelfImprovingTrainer.from_config(cfg, progress=progress).fit()


def write_summary(out):
    summary, lay = summarize(out), SuiteLayout(out)
    write_json(lay.summary_json, summary)
    write_text(lay.summary_md, format_summary(summary))
    return summary


def run_suite(common, methods, seeds, out, flags=None, top=None, where='suite', check=None, progress=False,
              kind='suite', config_path=None, only=None, **meta):
    """Resolve, run and summarise one suite in ``out``; returns the summary.  ``only``: names of
    the methods to run now (base always runs first); the summary covers every method, and lists
    the runs that are not finished."""
    if only is not None:
        bad = [n for n in only if n not in methods]
        if bad:
            raise UserError(f'--methods: {bad[0]!r} is not a method of {where}; accepted: {", ".join(methods)}')
    jobs = resolve_jobs(common, methods, seeds, out, flags, top, where, check, config_path)
    if only is not None:
        jobs = [j for j in jobs if j['name'] == 'base' or j['name'] in only]
    common = dict(common, **{k: v for k, v in (top or {}).items() if v is not None and k != 'output'})
    os.makedirs(out, exist_ok=True)
    suite_json = SuiteLayout(out).suite
    write_json(suite_json, merge_meta(suite_json, suite_meta(common, methods, seeds, kind, **meta)))
    t0 = time.time()
    run_jobs(jobs, progress)
    summary = write_summary(out)
    log.info('suite %s: %d runs in %.0fs', out, len(jobs), time.time() - t0)
    return summary


# ----------------------------------------------------------------------------- teacher x student

def run_matrix(models, seeds, out, common=None, flags=None, top=None, check=None, progress=False):
    """Paper Figure 4: for every student backbone s and teacher backbone t, one RSIR round whose
    data t generates and s trains on.  t's generator is its own base model (trained on the real
    rows, ``<out>/<t>/base/seed<N>``); s's round 0 is its base model.  Writes one suite folder per
    student and ``<out>/matrix.json``: relative change of NDCG@10 / Recall@10 of round 1 vs round 0."""
    common = dict(common or {})
    top = {k: v for k, v in (top or {}).items() if k != 'model_name'}
    student_jobs, bases, lay = [], [], SuiteLayout(out)
    base_model = {}
    for s in models:
        methods = {f'teacher_{t}': {'augment': 'rsir', 'rsir': {'rounds': 1, 'teacher': t}} for t in models}
        student = lay.student(s)
        jobs = resolve_jobs(dict(common, model_name=s), methods, seeds, student.root, flags,
                            dict(top, model_name=s), f'matrix ({s})', check)
        base_model[s] = copy.deepcopy(jobs[0]['cfg']['model'])
        bases += [j for j in jobs if j['name'] == 'base']
        student_jobs += [j for j in jobs if j['name'] != 'base']
        os.makedirs(student.root, exist_ok=True)
        write_json(student.suite, suite_meta(dict(common, model_name=s), methods, seeds, 'matrix-student'))
    for j in student_jobs:                      # teacher = the teacher backbone's own base model
        t = j['cfg']['rsir']['teacher']
        if t != j['cfg']['model_name']:
            base_run = lay.student(t).run('base', j['seed'])
            j['cfg']['rsir']['teacher_ckpt'] = base_run.best_checkpoint(0)
            j['cfg']['rsir']['teacher_model'] = copy.deepcopy(base_model[t])
    run_jobs(bases + student_jobs, progress)
    change = {}
    for s in models:
        summ = write_summary(lay.student(s).root)
        for r in summ['rows']:
            if r['method'].startswith('teacher_') and r['round'] == 1:
                t = r['method'][len('teacher_'):]
                change.setdefault(s, {})[t] = {m: r[m].get('change_vs_base') for m in ('ndcg@10', 'recall@10')}
    matrix = {'kind': 'matrix', 'students': models, 'teachers': models, 'seeds': seeds, 'change': change}
    write_json(lay.matrix, matrix)
    return matrix


def suite_meta(common, methods, seeds, kind='suite', **extra):
    return {'kind': kind, 'common': common, 'methods': methods, 'seeds': seeds, **extra}


def _sorted(values):
    try:
        return sorted(values)
    except TypeError:                          # mixed types: keep the order they came in
        return values


def merge_meta(path, meta):
    """What ``suite.json`` at ``path`` should say after a call described by ``meta``.  A call that
    runs part of the same experiment (same kind and common settings; ``--seeds N`` in two shells,
    or grid values added later) adds to what the folder already holds instead of replacing it, so
    every call's summary covers every seed (and grid point) of the folder: the seeds become the
    union, sorted (whichever shell came first), and a grid's methods and axis values too; a suite
    whose YAML gained a method (the old methods unchanged) keeps its seeds.  Anything else replaces
    the description."""
    if not os.path.exists(path):
        return meta
    old = read_json(path)
    if old.get('kind') != meta['kind'] or old.get('common') != meta['common']:
        return meta
    merged = dict(meta, seeds=_sorted(list(old['seeds']) + [s for s in meta['seeds'] if s not in old['seeds']]))
    if meta['kind'] == 'grid' and [k for k, _ in old.get('axes', [])] == [k for k, _ in meta.get('axes', [])]:
        axes = [[k, _sorted(list(v) + [x for x in nv if x not in v])]
                for (k, v), (_, nv) in zip(old['axes'], meta['axes'])]
        both = dict(old['methods'], **meta['methods'])      # every one is a combination of ``axes``
        merged['methods'] = {n: both[n] for n in grid_methods(axes, None) if n in both}   # the grid's order
        merged['axes'] = axes
    elif any(meta['methods'].get(n) != spec for n, spec in old.get('methods', {}).items()):
        return meta                      # a method dropped or redefined: another experiment
    return merged


# ----------------------------------------------------------------------------- grids

def grid_axes(flags):
    """Split command-line flags into fixed flags and grid axes: a value written as a comma list
    (``--rsir.tau 5,10,20``) is an axis.  Returns (fixed flags, [(key, [values])])."""
    fixed, axes = {}, []
    for k, v in flags.items():
        if isinstance(v, str) and ',' in v:
            vals = [C.parse_value(x.strip()) for x in v.split(',') if x.strip()]
            g, kk = C.flag_target(k)
            if g not in ('rsir', 'aug'):
                raise UserError(f'--{k}: only rsir.* and aug.* options can take a list of values (round 0 is shared)')
            axes.append((f'{g}.{kk}', vals))
        else:
            fixed[k] = v
    return fixed, axes


def grid_methods(axes, augment):
    """One method per combination of the axes, named like ``tau=5,p=0.3``."""
    methods = {}
    for combo in itertools.product(*[vals for _, vals in axes]):
        over = {'augment': augment}
        parts = []
        for (key, _), v in zip(axes, combo):
            g, k = key.split('.')
            over.setdefault(g, {})[k] = v
            parts.append(f'{k}={v}')
        methods[','.join(parts)] = over
    return methods


# ----------------------------------------------------------------------------- summary

def load_runs(out, meta):
    """method -> {seed: results dict} of the runs in the suite folder ``out`` (``meta``: its
    ``suite.json``), and the names of the runs among them that stopped mid-way (no ``results.json``;
    their finished rounds, :meth:`RunResult.load_rounds`)."""
    names = ['base'] + list(meta['methods'])
    runs, partial, lay = {}, [], SuiteLayout(out)
    for n in names:
        for s in meta['seeds']:
            run = lay.run(n, s)
            folder, p = run.root, run.results
            if os.path.exists(p):
                runs.setdefault(n, {})[s] = RunResult.load(p).to_dict()     # checked: a damaged file is one line
                continue
            res = RunResult.load_rounds(folder)
            if res is not None and (n == 'base' or len(res.rounds) > 1):   # a method's round 0 is base's
                runs.setdefault(n, {})[s] = res.to_dict()
                partial.append(f'{n}/seed{s} (rounds 0-{len(res.rounds) - 1})')
    return runs, partial


def _paired_p(a, b):
    """Two-sided paired t-test p-value across seeds (None with fewer than 2 pairs or no spread)."""
    if len(a) < 2:
        return None
    d = np.asarray(a) - np.asarray(b)
    if np.allclose(d, d[0]):
        return None
    from scipy import stats
    return float(stats.ttest_rel(a, b).pvalue)


def summarize(out):
    """The summary of the suite folder ``out`` (see :func:`summarize_runs`)."""
    meta = read_json(SuiteLayout(out).suite)
    runs, partial = load_runs(out, meta)
    summary = summarize_runs(runs, list(meta['methods']), meta['seeds'], meta.get('kind', 'suite'))
    summary['partial'] = partial
    return summary


def metric_cell(values):
    """One metric of a summary row: mean, sample std (0 for one seed) and the per-seed values."""
    return {'mean': float(np.mean(values)), 'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            'values': values}


def seed_values(row, metric, seeds):
    """A summary row's per-seed values of ``metric`` for ``seeds`` (a subset of the row's seeds), in that order."""
    return [row[metric]['values'][row['seeds'].index(s)] for s in seeds]


def row_label(row, n_seeds):
    """A summary row's method name, with its seeds when it has fewer than the folder's ``n_seeds``."""
    if len(row['seeds']) == n_seeds:
        return row['method']
    return f"{row['method']} (seeds {', '.join(map(str, row['seeds']))})"


def summarize_runs(runs, methods, seeds_all, kind='suite'):
    """Rows (method, round) with mean / std over seeds of each metric, relative change of the
    mean vs base, paired t-test vs base across seeds, and the training-data statistics.  Every RSIR
    row (``rsir``, ``rsir+reorder``) is also compared with the heuristic row (reorder / insert) of the
    same round with the best mean test NDCG@10: change of the mean, paired t-test and the number of
    seeds it is ahead on, over the seeds both rows have.

    ``runs``: method name -> {seed: results.json dict}; ``'base'`` holds the runs whose round 0 is
    the reference (its round 0 is the ``base`` row; other methods contribute rounds >= 1).  A row
    ``(method, k)`` averages the seeds whose run has round ``k``."""
    base = runs.get('base', {})
    rows = []
    for name in ['base'] + list(methods):
        by_seed = runs.get(name, {})
        if not by_seed:
            continue
        n_rounds = max(len(r['rounds']) for r in by_seed.values())
        for k in range(0 if name == 'base' else 1, n_rounds):
            seeds = sorted(s for s in by_seed if len(by_seed[s]['rounds']) > k)   # a row: the seeds that reached k
            row = {'method': name, 'round': k, 'augment': next(iter(by_seed.values()))['augment'],
                   'fidelity': next(iter(by_seed.values())).get('fidelity'), 'seeds': seeds}
            for m in METRICS:
                v = [by_seed[s]['rounds'][k][m] for s in seeds]
                b = [base[s]['rounds'][0][m] for s in seeds if s in base]
                row[m] = metric_cell(v)
                if len(b) == len(v) and np.mean(b) > 0:
                    row[m]['change_vs_base'] = float(np.mean(v) / np.mean(b) - 1)
                    row[m]['p_vs_base'] = _paired_p(v, b) if name != 'base' else None
            row['val'] = {m: float(np.mean([by_seed[s]['rounds'][k]['val'][m] for s in seeds])) for m in METRICS}
            for key in ('train_sequences', 'interactions', 'density', 'apen', 'apen_reciprocal'):
                vals = [by_seed[s]['rounds'][k].get(key) for s in seeds]
                row[key] = float(np.mean(vals)) if all(x is not None for x in vals) else None
            gens = [by_seed[s]['rounds'][k].get('generation') for s in seeds]
            if all(gens):
                row['acceptance_rate'] = (float(np.mean([g['acceptance_rate'] for g in gens]))
                                          if 'acceptance_rate' in gens[0] else None)
                row['synthetic_rows'] = float(np.mean([g['kept'] for g in gens]))
                diags = [g.get('diagnostics') for g in gens]
                if all(diags):
                    row['diagnostics'] = {key: float(np.mean([d[key] for d in diags])) for key in diags[0]}
            row['wall_seconds'] = float(np.sum([by_seed[s]['wall_seconds'] for s in seeds]))
            rows.append(row)
    heur = [r for r in rows if r['augment'] in ('reorder', 'insert')]
    for r in rows:
        if r['augment'].split('+')[0] == 'rsir' and heur:
            same = [h for h in heur if h['round'] == r['round']] or heur
            best = max(same, key=lambda h: h['ndcg@10']['mean'])
            r['best_heuristic'] = f"{best['method']} r{best['round']}"
            common = [s for s in r['seeds'] if s in best['seeds']]
            for m in METRICS:
                if best[m]['mean'] > 0:
                    r[m]['change_vs_best_heuristic'] = r[m]['mean'] / best[m]['mean'] - 1
                v, h = seed_values(r, m, common), seed_values(best, m, common)
                r[m]['p_vs_best_heuristic'] = _paired_p(v, h)         # on the seeds both have
                r[m]['ahead_of_best_heuristic'] = [int(sum(a > b for a, b in zip(v, h))), len(common)]
    missing = [f'{n}/seed{s}' for n in ['base'] + list(methods) for s in seeds_all if s not in runs.get(n, {})]
    return {'kind': kind, 'seeds': _sorted(list(seeds_all)), 'rows': rows, 'missing': missing}


def format_cell(x):
    """A :func:`metric_cell` as markdown: ``mean ± std`` over several seeds, the value for one."""
    if len(x['values']) > 1:
        return f"{x['mean']:.4f} ± {x['std']:.4f}"
    return f"{x['mean']:.4f}"


def format_p(x):
    """A p-value as markdown ('' when there is none)."""
    return '' if x is None else ('< 0.001' if x < 0.001 else f'{x:.3f}')


def _pct(x, key):
    return f'{x[key]:+.2%}' if x.get(key) is not None else ''


def format_summary(summary):
    """Markdown: one row per (method, round); metrics as mean ± std over seeds."""
    n = len(summary['seeds'])
    lines = [f"Seeds: {', '.join(map(str, summary['seeds']))} (mean ± sample std over {n} seed(s); change = "
             'relative change of the mean vs base; p = paired t-test vs base across seeds on NDCG@10)', '',
             '| method | round | NDCG@10 | Recall@10 | NDCG@20 | Recall@20 | Δ NDCG@10 | Δ Recall@10 | p (NDCG@10) | '
             'val NDCG@20 | train rows | density | ApEn | accept |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in summary['rows']:
        p = r['ndcg@10'].get('p_vs_base')
        acc = r.get('acceptance_rate')
        name = row_label(r, n)
        lines.append(
            f"| {name} | {r['round']} | " + ' | '.join(format_cell(r[m]) for m in METRICS) +
            f" | {_pct(r['ndcg@10'], 'change_vs_base')} | {_pct(r['recall@10'], 'change_vs_base')} | "
            f"{format_p(p)} | {r['val']['ndcg@20']:.4f} | {r['train_sequences']:.0f} | "
            f"{r['density']:.6f} | "
            f"{r['apen']:.4f} | {'' if acc is None else f'{acc:.1%}'} |")
    vs = [r for r in summary['rows'] if 'best_heuristic' in r]
    if vs:
        lines += ['', '| RSIR row | best heuristic (same round) | Δ NDCG@10 | Δ Recall@10 | p (NDCG@10) | '
                  'p (Recall@10) | ahead on (NDCG@10) |', '|---|---|---|---|---|---|---|']
        for r in vs:
            p = [r[m].get('p_vs_best_heuristic') for m in ('ndcg@10', 'recall@10')]
            ahead = r['ndcg@10'].get('ahead_of_best_heuristic')
            lines.append(f"| {r['method']} r{r['round']} | {r['best_heuristic']} | "
                         f"{_pct(r['ndcg@10'], 'change_vs_best_heuristic')} | "
                         f"{_pct(r['recall@10'], 'change_vs_best_heuristic')} | "
                         + ' | '.join(format_p(x) for x in p) +
                         f" | {'' if not ahead else f'{ahead[0]} of {ahead[1]} seeds'} |")
        lines += ['', '(change of the means; p: paired t-test on the seeds both rows have)']
    if summary.get('partial'):
        lines += ['', 'Stopped mid-way (their finished rounds are in the table): ' + ', '.join(summary['partial'])]
    if summary['missing']:
        lines += ['', 'Not finished: ' + ', '.join(summary['missing'])]
    return '\n'.join(lines) + '\n'
