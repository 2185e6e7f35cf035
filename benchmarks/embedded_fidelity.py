"""Issue #16 item 1: how close the embedded dataset is to the real files.  Prints a markdown table of
:func:`recstudio_rsir.analysis.stats.dataset_profile` for Beauty, Toys (when ../shared is beside this
checkout), ``embedded`` (the default: the miniature of the real files) and ``planted`` (the previous
default), and, for every ``--runs NAME=FOLDER`` given, the base SASRec and popularity NDCG@10 of that
finished run.

    python benchmarks/embedded_fidelity.py [--seed 0] [--json out.json] \
        [--runs Beauty=runs/evidence_beauty_p20/base/seed2022 --runs embedded=runs/demo] \
        [--miniature n_eras=12 --miniature p_complement=0.1 ...] [--write embedded.txt]

``--miniature KEY=VALUE`` sets a parameter of :func:`recstudio_rsir.data.make_miniature` (the generator
of ``embedded``) for the embedded column, to profile a variant; ``--write FILE`` also writes that
dataset as a sequence file (``user item item ...``) that
``run_recstudio.py -d FILE`` trains on (the difficulty rows of docs/embedded.md).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from recstudio_rsir import data as D  # noqa: E402
from recstudio_rsir.analysis.stats import dataset_profile  # noqa: E402

SHARED = os.path.join(ROOT, '..', 'shared', 'data', 'seqrec')
ROWS = [('users', 'users', '{:,}'), ('items', 'items', '{:,}'), ('interactions', 'interactions', '{:,}'),
        ('interactions per item', 'interactions_per_item', '{:.1f}'), ('mean length', 'mean_length', '{:.2f}'),
        ('length p10 / p25 / median', ('length_p10', 'length_p25', 'length_median'), '{:.0f}'),
        ('length p75 / p90 / p99', ('length_p75', 'length_p90', 'length_p99'), '{:.0f}'),
        ('longest', 'length_max', '{}'), ('top-10% items\' share', 'top10_item_share', '{:.3f}'),
        ('item Gini', 'item_gini', '{:.3f}'), ('repeats within a user', 'repeat_share', '{:.3f}'),
        ('consecutive pairs seen more than once', 'pair_recurrence', '{:.3f}')]


def miniature_params(pairs):
    """``['n_eras=12', 'p_complement=0.1']`` -> keyword arguments of make_miniature (int or float values)."""
    import inspect
    accepted = [k for k in inspect.signature(D.make_miniature).parameters if k != 'seed']
    out = {}
    for pair in pairs:
        key, _, value = pair.partition('=')
        if key not in accepted or not value:
            raise SystemExit(f'--miniature {pair}: expected KEY=NUMBER with KEY one of {", ".join(accepted)}')
        try:
            out[key] = int(value) if value.lstrip('-').isdigit() else float(value)
        except ValueError:
            raise SystemExit(f'--miniature {pair}: {value!r} is not a number')
    return out


def profiles(seed, mini=None):
    out = {}
    for name, f in (('Beauty', 'Beauty.txt.gz'), ('Toys', 'Toys_and_Games.txt.gz')):
        path = os.path.join(SHARED, f)
        if os.path.exists(path):
            out[name] = dataset_profile([[i for i, _ in s] for s in D.read_sequence_file(path).values()])
    out['embedded'] = dataset_profile([[i for i, _ in s] for s in D.make_miniature(seed, **(mini or {})).values()])
    out['planted'] = dataset_profile([[i for i, _ in s] for s in D.make_planted(seed).values()])
    return out


def run_row(folder):
    r = json.load(open(os.path.join(folder, 'results.json')))
    r0 = r['rounds'][0]
    base, pop = r0.get('test', r0)['ndcg@10'], r['popularity']['test']['ndcg@10']
    return {'sasrec_ndcg@10': base, 'pop_ndcg@10': pop, 'ratio': base / pop if pop else float('nan')}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--json')
    ap.add_argument('--runs', action='append', default=[], metavar='NAME=FOLDER')
    ap.add_argument('--miniature', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--write', metavar='FILE')
    a = ap.parse_args(argv)
    mini = miniature_params(a.miniature)
    prof = profiles(a.seed, mini)
    if a.write:
        D.write_sequences_txt(a.write, [[i for i, _ in s] for s in D.make_miniature(a.seed, **mini).values()])
    for spec in a.runs:
        name, folder = spec.split('=', 1)
        prof.setdefault(name, {}).update(run_row(folder))
    names = list(prof)
    lines = ['| statistic | ' + ' | '.join(names) + ' |', '|---|' + '---:|' * len(names)]
    for label, key, fmt in ROWS:
        keys = key if isinstance(key, tuple) else (key,)
        cells = [' / '.join(fmt.format(prof[n][k]) for k in keys) if all(k in prof[n] for k in keys) else ''
                 for n in names]
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    for label, key in (('SASRec NDCG@10 (test)', 'sasrec_ndcg@10'), ('popularity NDCG@10 (test)', 'pop_ndcg@10'),
                       ('SASRec / popularity', 'ratio')):
        if any(key in prof[n] for n in names):
            lines.append(f'| {label} | ' + ' | '.join(f'{prof[n][key]:.4f}' if key in prof[n] else ''
                                                      for n in names) + ' |')
    print('\n'.join(lines))
    if a.json:
        from recstudio_rsir.atomic import write_json
        write_json(a.json, prof)


if __name__ == '__main__':
    main()
