"""Suites (methods x seeds), grids, the teacher x student matrix and the report, on tiny configs."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from test_end_to_end import ROOT, TINY

RSIR = [sys.executable, '-m', 'recstudio_rsir.cli']


def _tiny_common(data):
    return {'model_name': 'SASRec', 'dataset': data,
            'train': {'epochs': 2, 'patience': 2, 'batch_size': 128, 'num_negatives': 32, 'num_threads': 1},
            'model': {'embed_dim': 16, 'hidden_size': 32, 'layer_num': 1},
            'rsir': {'m': 2, 'rounds': 1}}


def _png_ok(path):
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert('L')
        lo, hi = im.getextrema()
        return im.size[0] > 300 and hi - lo > 100          # not blank


def test_suite_runs_methods_and_seeds_and_shares_round0(small_file, tmp_path):
    spec = {'seeds': [1, 2], 'common': _tiny_common(small_file),
            'methods': {'reorder': {'augment': 'reorder'}, 'rsir': {'augment': 'rsir'},
                        'rsir_off': {'augment': 'rsir', 'rsir': {'fidelity': 'off'}}}}
    path = tmp_path / 'suite.yaml'
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / 'out'
    r = subprocess.run(RSIR + ['suite', str(path), '--output', str(out), '--quiet'], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    summ = json.load(open(out / 'summary.json'))
    rows = {(x['method'], x['round']): x for x in summ['rows']}
    assert set(rows) == {('base', 0), ('reorder', 1), ('rsir', 1), ('rsir_off', 1)} and not summ['missing']
    for seed in (1, 2):
        base = json.load(open(out / 'base' / f'seed{seed}' / 'results.json'))
        for m in ('reorder', 'rsir', 'rsir_off'):
            res = json.load(open(out / m / f'seed{seed}' / 'results.json'))
            # round 0 of every method is the base model of that seed (trained once)
            assert res['rounds'][0]['ndcg@10'] == base['rounds'][0]['ndcg@10']
            assert not (out / m / f'seed{seed}' / 'round_0' / 'model').exists()
            assert res['seed'] == seed
        off = json.load(open(out / 'rsir_off' / f'seed{seed}' / 'round_1' / 'generation.json'))
        on = json.load(open(out / 'rsir' / f'seed{seed}' / 'round_1' / 'generation.json'))
        assert off['rejected_fidelity'] == 0 and off['acceptance_rate'] == 1.0
        assert on['acceptance_rate'] < 1.0
    # mean / std over the two seeds
    vals = [json.load(open(out / 'rsir' / f'seed{s}' / 'results.json'))['rounds'][1]['ndcg@10'] for s in (1, 2)]
    assert rows[('rsir', 1)]['ndcg@10']['mean'] == pytest.approx(sum(vals) / 2)
    assert rows[('rsir', 1)]['ndcg@10']['values'] == vals
    assert rows[('rsir', 1)]['best_heuristic'] == 'reorder r1'
    # against that heuristic: paired over the seeds, and how many seeds RSIR is ahead on
    from scipy import stats
    heur = [json.load(open(out / 'reorder' / f'seed{s}' / 'results.json'))['rounds'][1]['ndcg@10'] for s in (1, 2)]
    got = rows[('rsir', 1)]['ndcg@10']
    assert got['ahead_of_best_heuristic'] == [sum(a > b for a, b in zip(vals, heur)), 2]
    if len({a - b for a, b in zip(vals, heur)}) == 2:
        assert got['p_vs_best_heuristic'] == pytest.approx(stats.ttest_rel(vals, heur).pvalue)
    # the report: tables and plots that are not blank
    text = (out / 'report.md').read_text()
    assert '| rsir | 1 |' in text and 'ApEn' in text and 'plots/metrics_per_round.png' in text
    assert '| rsir r1 | reorder r1 |' in text and 'seeds both rows have' in text
    for png in ('metrics_per_round', 'data_per_round', 'generation_per_round'):
        assert _png_ok(out / 'plots' / f'{png}.png')
    # a second call re-runs nothing
    mtime = os.path.getmtime(out / 'rsir' / 'seed1' / 'results.json')
    r = subprocess.run(RSIR + ['suite', str(path), '--output', str(out), '--quiet'], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and os.path.getmtime(out / 'rsir' / 'seed1' / 'results.json') == mtime
    # the small result files alone (benchmarks/keep_results.py) re-summarise to the same table
    kept = tmp_path / 'kept'
    r = subprocess.run([sys.executable, 'benchmarks/keep_results.py', str(out), str(kept)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    files = [os.path.join(d, f) for d, _, fs in os.walk(kept) for f in fs]
    assert files and not [f for f in files if f.endswith(('.pt', '.npz', '.inter'))]
    r = subprocess.run(RSIR + ['report', str(kept)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.load(open(kept / 'summary.json'))['rows'] == summ['rows']
    # benchmarks/grid_diagnostics.py: one line per method from the kept files, best validation first
    r = subprocess.run([sys.executable, 'benchmarks/grid_diagnostics.py', str(kept), '--seed', '1'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = {ln.split('|')[1].strip(): ln.split('|') for ln in r.stdout.splitlines()[2:]}
    assert set(lines) == {'base', 'reorder', 'rsir', 'rsir_off'}
    vals = [float(ln.split('|')[2]) for ln in r.stdout.splitlines()[2:]]
    assert vals == sorted(vals, reverse=True)
    rs = json.load(open(kept / 'rsir' / 'seed1' / 'results.json'))['rounds'][-1]
    assert float(lines['rsir'][3]) == pytest.approx(rs['ndcg@10'], abs=1e-4)
    assert lines['rsir_off'][8].strip() == '100.0%' and lines['base'][8].strip() == ''
    # benchmarks/rounds_per_seed.py: the summary's mean / change / p beside each seed's values
    r = subprocess.run([sys.executable, 'benchmarks/rounds_per_seed.py', str(kept), '--method', 'rsir_off',
                        '--label', 'tiny'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    body = [[c.strip() for c in ln.split('|')[1:-1]] for ln in r.stdout.splitlines()[2:]]
    assert [c[:3] for c in body] == [['tiny', '0 (base)', '1, 2'], ['tiny', '1', '1, 2']]
    off = rows[('rsir_off', 1)]
    assert body[1][6] == f"{off['ndcg@10']['change_vs_base']:+.1%} / {off['recall@10']['change_vs_base']:+.1%}"
    res = {s: json.load(open(kept / 'rsir_off' / f'seed{s}' / 'results.json'))['rounds'] for s in (1, 2)}
    base = {s: json.load(open(kept / 'base' / f'seed{s}' / 'results.json'))['rounds'][0] for s in (1, 2)}
    assert body[1][8] == ' / '.join(f"{res[s][1]['ndcg@10'] / base[s]['ndcg@10'] - 1:+.1%}" for s in (1, 2))
    assert body[1][10] == ' / '.join(f"{res[s][1]['val']['ndcg@20']:.4f}" for s in (1, 2))
    assert body[1][11] == '100.0% / 100.0%' and body[0][11] == ''
    r = subprocess.run([sys.executable, 'benchmarks/rounds_per_seed.py', str(kept), '--method', 'shuffle'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and "no run of method 'shuffle'" in r.stderr, r.stderr


def test_suite_methods_option_runs_a_subset(small_file, tmp_path):
    spec = {'seeds': [1], 'common': _tiny_common(small_file),
            'methods': {'reorder': {'augment': 'reorder'}, 'insert': {'augment': 'insert'}}}
    path = tmp_path / 'suite.yaml'
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / 'out'
    r = subprocess.run(RSIR + ['suite', str(path), '--output', str(out), '--quiet', '--methods', 'insert'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / 'base' / 'seed1' / 'results.json').exists() and (out / 'insert' / 'seed1' / 'results.json').exists()
    assert not (out / 'reorder').exists()
    summ = json.load(open(out / 'summary.json'))
    assert summ['missing'] == ['reorder/seed1'] and 'Not finished: reorder/seed1' in (out / 'summary.md').read_text()
    assert not list(out.rglob('.lock'))                   # locks are released
    r = subprocess.run(RSIR + ['suite', str(path), '--output', str(out), '--methods', 'shuffle'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "'shuffle' is not a method" in r.stderr, r.stderr


def test_suite_calls_with_seeds_add_up(small_file, tmp_path):
    """`--seeds N` in two shells (or one after the other): each call's summary covers every seed the
    folder holds, not just its own (a later call used to overwrite suite.json with its seeds only,
    so the first call's summary lost its own run and its report failed)."""
    spec = {'seeds': [1, 2], 'common': _tiny_common(small_file), 'methods': {'reorder': {'augment': 'reorder'}}}
    path = tmp_path / 'suite.yaml'
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / 'out'
    for seed in ('2', '1'):
        r = subprocess.run(RSIR + ['suite', str(path), '--output', str(out), '--quiet', '--seeds', seed], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    meta = json.load(open(out / 'suite.json'))
    assert meta['seeds'] == [1, 2]   # sorted, whichever shell came first
    summ = json.load(open(out / 'summary.json'))
    rows = {(x['method'], x['round']): x for x in summ['rows']}
    assert rows[('reorder', 1)]['seeds'] == [1, 2] and not summ['missing']
    assert len(rows[('reorder', 1)]['ndcg@10']['values']) == 2


def test_suite_method_given_more_rounds_continues_its_finished_runs(small_file, tmp_path):
    """`rsir.rounds` may grow in a run folder, so a suite whose method now asks for 2 rounds goes on
    from its finished 1-round run (round 1 kept as it was); it used to skip the run as finished and
    summarise the old rounds without a word."""
    spec = {'seeds': [1], 'common': _tiny_common(small_file), 'methods': {'rsir': {'augment': 'rsir'}}}
    path = tmp_path / 'suite.yaml'
    out = tmp_path / 'out'
    run = tmp_path / 'out' / 'rsir' / 'seed1'

    def suite():
        path.write_text(yaml.safe_dump(spec))
        r = subprocess.run(RSIR + ['suite', str(path), '--output', str(out), '--quiet'], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.load(open(run / 'results.json'))

    first = suite()
    assert len(first['rounds']) == 2
    round1 = (run / 'round_1' / 'metrics.json').read_text()
    spec['methods']['rsir']['rsir'] = {'rounds': 2}
    second = suite()
    assert [r['round'] for r in second['rounds']] == [0, 1, 2]
    assert (run / 'round_1' / 'metrics.json').read_text() == round1              # not trained again
    assert second['rounds'][1]['ndcg@10'] == first['rounds'][1]['ndcg@10']
    assert second['rounds'][2]['train_sequences'] > second['rounds'][1]['train_sequences']
    summ = json.load(open(out / 'summary.json'))
    assert {(x['method'], x['round']) for x in summ['rows']} == {('base', 0), ('rsir', 1), ('rsir', 2)}
    assert suite() == second                                                      # now finished: skipped
    # a run stopped mid-way (no results.json; round 2 was training): its finished rounds, read from the
    # round files alone, are the rounds results.json held, and the summary shows them and says so
    from recstudio_rsir.records import RunResult
    os.remove(run / 'results.json')
    assert RunResult.load_rounds(str(run)).to_dict()['rounds'] == second['rounds']
    os.remove(run / 'round_2' / 'metrics.json')
    assert RunResult.load_rounds(str(run)).to_dict()['rounds'] == second['rounds'][:2]
    from recstudio_rsir.errors import UserError
    good = (run / 'round_1' / 'train_stats.json').read_text()
    (run / 'round_1' / 'train_stats.json').write_text('{"sequences": 3}')           # damaged: one line naming it
    with pytest.raises(UserError, match=r'round_1: metrics.json or train_stats.json lacks'):
        RunResult.load_rounds(str(run))
    (run / 'round_1' / 'train_stats.json').write_text(good)
    r = subprocess.run(RSIR + ['report', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    part = json.load(open(out / 'summary.json'))
    assert [(x['method'], x['round']) for x in part['rows']] == [('base', 0), ('rsir', 1)]
    assert part['rows'][1] == [x for x in summ['rows'] if (x['method'], x['round']) == ('rsir', 1)][0] | {
        'wall_seconds': part['rows'][1]['wall_seconds']}
    assert part['partial'] == ['rsir/seed1 (rounds 0-1)'] and not part['missing']
    assert 'Stopped mid-way' in (out / 'summary.md').read_text()
    # keep_results keeps the finished rounds of such a run, and they re-summarise to the same rows
    kept = tmp_path / 'kept'
    r = subprocess.run([sys.executable, 'benchmarks/keep_results.py', str(out), str(kept)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not (kept / 'rsir' / 'seed1' / 'round_2').exists()
    r = subprocess.run(RSIR + ['report', str(kept)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.load(open(kept / 'summary.json'))['rows'] == part['rows']


def test_merge_meta_adds_seeds_and_grid_points_of_the_same_experiment(tmp_path):
    from recstudio_rsir.analysis.suite import grid_methods, merge_meta, suite_meta
    from recstudio_rsir.atomic import write_json
    path = str(tmp_path / 'suite.json')
    common = {'model_name': 'SASRec', 'train': {'patience': 20}}
    methods = {'rsir': {'augment': 'rsir'}}
    assert merge_meta(path, suite_meta(common, methods, [3])) == suite_meta(common, methods, [3])   # no file yet
    write_json(path, suite_meta(common, methods, [3, 1]))
    assert merge_meta(path, suite_meta(common, methods, [2, 1]))['seeds'] == [1, 2, 3]   # sorted, not arrival order
    # another experiment in the same folder replaces the description
    other = dict(common, train={'patience': 5})
    assert merge_meta(path, suite_meta(other, methods, [2]))['seeds'] == [2]
    assert merge_meta(path, suite_meta(common, {'x': {'augment': 'insert'}}, [2]))['seeds'] == [2]
    # a method added to the YAML (the old ones unchanged) keeps the folder's seeds; a redefined one does not
    grown = dict(methods, both={'augment': 'rsir+reorder'})
    m = merge_meta(path, suite_meta(common, grown, [2]))
    assert m['seeds'] == [1, 2, 3] and list(m['methods']) == ['rsir', 'both']
    assert merge_meta(path, suite_meta(common, {'rsir': {'augment': 'rsir', 'rsir': {'tau': 5}}}, [2]))['seeds'] == [2]
    # grids: values of the same axes add up, methods in the grid's order
    ax10 = [['rsir.tau', [10, 20]]]
    write_json(path, suite_meta(common, grid_methods(ax10, 'rsir'), [2022], 'grid', axes=ax10))
    ax5 = [['rsir.tau', [5, 20]]]
    m = merge_meta(path, suite_meta(common, grid_methods(ax5, 'rsir'), [2022], 'grid', axes=ax5))
    assert m['axes'] == [['rsir.tau', [5, 10, 20]]] and list(m['methods']) == ['tau=5', 'tau=10', 'tau=20']
    axp = [['rsir.p', [0.3]]]                            # other axes: a new grid
    meta = merge_meta(path, suite_meta(common, grid_methods(axp, 'rsir'), [2022], 'grid', axes=axp))
    assert list(meta['methods']) == ['p=0.3']


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    from recstudio_rsir.errors import UserError
    from recstudio_rsir.atomic import run_lock
    run = tmp_path / 'run'
    with run_lock(str(run)):
        assert (run / '.lock').read_text() == str(os.getpid())
        with run_lock(str(run)):                          # the holder may enter again (a suite runs a trainer)
            assert (run / '.lock').exists()
        assert (run / '.lock').exists()                   # ... and the inner exit does not release it
    assert not (run / '.lock').exists()
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        run.mkdir(exist_ok=True)
        (run / '.lock').write_text(str(live.pid))
        with pytest.raises(UserError, match=f'is being written by process {live.pid}'):
            with run_lock(str(run)):
                pass
    finally:
        live.kill()
        live.wait()
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    (run / '.lock').write_text(dead.stdout.strip())       # left by a process that has exited
    with run_lock(str(run)):
        assert (run / '.lock').read_text() == str(os.getpid())


@pytest.mark.parametrize('spec,expect', [
    ({'methods': {'x': {'train': {'epochs': 1}}}}, 'cannot differ between methods'),
    ({'methods': {'x': {'augment': 'shuffle'}}}, "augment: 'shuffle' is not one of none, rsir, reorder, insert"),
    ({'methods': {}}, '`methods` must be a mapping'),
    ({'methods': {'x': {'augment': 'rsir'}}, 'seeds': 'a'}, '`seeds` must be a list of integers'),
    ({'methods': {'x': {'augment': 'rsir'}}, 'colour': 1}, 'unknown key `colour`'),
])
def test_bad_suite_is_a_one_line_error(small_file, tmp_path, spec, expect):
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(dict({'common': _tiny_common(small_file)}, **spec)))
    r = subprocess.run(RSIR + ['suite', str(path), '--output', str(tmp_path / 'o')], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and expect in r.stderr, r.stderr
    assert not (tmp_path / 'o' / 'base').exists()


def test_grid_from_comma_lists(small_file, tmp_path):
    out = tmp_path / 'grid'
    cmd = [sys.executable, 'run_recstudio.py', '-m', 'SASRec', '-d', small_file, '--output', str(out), *TINY,
           '--epochs', '1', '--augment', 'rsir', '--rsir.tau', '5,50', '--rsir.p', '0.2,0.8']
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    summ = json.load(open(out / 'summary.json'))
    names = sorted(x['method'] for x in summ['rows'] if x['method'] != 'base')
    assert names == ['tau=5,p=0.2', 'tau=5,p=0.8', 'tau=50,p=0.2', 'tau=50,p=0.8']
    gen = json.load(open(out / 'tau=5,p=0.8' / 'seed2022' / 'round_1' / 'generation.json'))
    assert gen['config']['tau'] == 5 and gen['config']['p'] == 0.8
    # a looser threshold accepts at least as large a share of steps
    acc = {x['method']: x['acceptance_rate'] for x in summ['rows'] if x['method'] != 'base'}
    assert acc['tau=50,p=0.2'] >= acc['tau=5,p=0.2']
    assert (out / 'report.md').exists()


def test_teacher_student_matrix(small_file, tmp_path):
    out = tmp_path / 'm'
    cmd = RSIR + ['matrix', '-d', small_file, '--models', 'SASRec,HSTU', '--output', str(out), '--quiet',
                  '--epochs', '2', '--patience', '2', '--batch_size', '128', '--num_negatives', '32',
                  '--num_threads', '1', '--rsir.m', '2', '--model.embed_dim', '16']
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    mat = json.load(open(out / 'matrix.json'))
    assert set(mat['change']) == {'SASRec', 'HSTU'}
    assert all(set(v) == {'SASRec', 'HSTU'} for v in mat['change'].values())
    # HSTU's data for SASRec came from HSTU's base model, not from a new teacher training
    gen = json.load(open(out / 'SASRec' / 'teacher_HSTU' / 'seed2022' / 'round_1' / 'generation.json'))
    assert gen['generator'] == 'HSTU'
    assert not (out / 'SASRec' / 'teacher_HSTU' / 'seed2022' / 'round_0' / 'teacher').exists()
    base = json.load(open(out / 'SASRec' / 'base' / 'seed2022' / 'results.json'))['rounds'][0]['ndcg@10']
    r1 = json.load(open(out / 'SASRec' / 'teacher_HSTU' / 'seed2022' / 'results.json'))['rounds'][1]['ndcg@10']
    assert mat['change']['SASRec']['HSTU']['ndcg@10'] == pytest.approx(r1 / base - 1)
    assert _png_ok(out / 'plots' / 'teacher_student.png')
    assert 'teacher \\ student' in (out / 'report.md').read_text()


def test_report_of_a_single_run_and_of_nothing(small_file, tmp_path):
    from test_end_to_end import _cmd
    out = tmp_path / 'run'
    r = subprocess.run(_cmd(small_file, out, '--augment', 'insert', '--rsir.rounds', '2', '--epochs', '1'),
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(RSIR + ['report', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = (out / 'report.md').read_text()
    assert '| insert | 2 |' in text and _png_ok(out / 'plots' / 'data_per_round.png')
    r = subprocess.run(RSIR + ['report', str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'neither results.json' in r.stderr and r.stderr.count('\n') == 1


@pytest.mark.parametrize('name', sorted(f for f in os.listdir(os.path.join(ROOT, 'yamls')) if f.endswith('.yaml')))
def test_shipped_yamls_resolve(name, tmp_path):
    from recstudio_rsir import config as C
    from recstudio_rsir.analysis import suite as S
    path = os.path.join(ROOT, 'yamls', name)
    if 'methods' in yaml.safe_load(open(path)):
        common, methods, seeds, out = S.load_suite(path)
        jobs = S.resolve_jobs(common, methods, seeds, str(tmp_path), where=path)
        assert len(jobs) == len(seeds) * (len(methods) + 1) and out.startswith('runs/')
    else:
        assert C.resolve(config_path=path)['model_name']


def test_paper_tables_script_smoke(small_file, tmp_path):
    """benchmarks/paper_tables.sh on a tiny suite: runs it and gathers its summary."""
    spec = {'output': str(tmp_path / 'suite'), 'seeds': [3], 'common': _tiny_common(small_file),
            'methods': {'rsir': {'augment': 'rsir'}}}
    spec['common']['train']['epochs'] = 1
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(spec))
    md = tmp_path / 'tables.md'
    r = subprocess.run(['bash', 'benchmarks/paper_tables.sh', str(path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=dict(os.environ, OUT_MD=str(md)))
    assert r.returncode == 0, r.stderr[-3000:]
    text = md.read_text()
    assert f'## {path}' in text and '| rsir | 1 |' in text and '| base | 0 |' in text


def test_gpu_rounds_script_runs_jobs_side_by_side_and_waits_for_the_shared_base(small_file, tmp_path):
    """benchmarks/gpu_rounds.sh (DEVICE=cpu): every job finishes, a second job of the same seed starts only
    once that seed's base run has finished (it trains no base of its own), and the tarball holds the small
    files and no checkpoint."""
    import tarfile
    spec = {'output': str(tmp_path / 'suite'), 'seeds': [3, 4], 'common': _tiny_common(small_file),
            'methods': {'rsir': {'augment': 'rsir'}, 'reorder': {'augment': 'reorder'}}}
    spec['common']['train']['epochs'] = 1
    path = tmp_path / 'tiny.yaml'
    path.write_text(yaml.safe_dump(spec))
    jobs = f'{path}:rsir:3 {path}:reorder:3 {path}:rsir:4'
    r = subprocess.run(['bash', os.path.join(ROOT, 'benchmarks', 'gpu_rounds.sh'), '600', 'out.tgz'], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, JOBS=jobs, DEVICE='cpu', POLL='1', PYTHON=sys.executable))
    assert r.returncode == 0, r.stderr[-3000:]
    assert '0 suite(s) running' in r.stdout and '==' not in r.stdout, r.stdout[-3000:]      # no error in a log
    for run in ('base/seed3', 'rsir/seed3', 'reorder/seed3', 'base/seed4', 'rsir/seed4'):
        assert (tmp_path / 'suite' / run / 'results.json').exists(), run
    logs = tmp_path / 'runs' / 'gpu_logs'
    assert 'base seed 3' in (logs / 'tiny_rsir_3.log').read_text()
    assert 'base seed 3' not in (logs / 'tiny_reorder_3.log').read_text()
    assert r.stdout.index('start') < r.stdout.index(f'start {path} reorder seed 3')
    with tarfile.open(tmp_path / 'out.tgz') as t:
        names = t.getnames()
    assert 'runs/gpu_logs/tiny_reorder_3.log' in names and not [n for n in names if n.endswith(('.pt', '.npz'))]


def test_report_lines_average_one_set_of_seeds_from_base_to_their_last_round():
    """A plotted line never mixes seeds: a method run on fewer seeds than base (rsir_real on seed 1 beside
    rsir on seeds 1-2) starts from base over its own seeds and is labelled with them, as summary.md does;
    a round that fewer seeds reached (rsir round 2, seed 1 only) starts a line of its own over those seeds,
    with every earlier round restricted to them, and the full line stops at the last round all its seeds
    reached.  The data plots, whose statistics have no per-seed values, keep one line a method."""
    from recstudio_rsir.analysis import report as R
    from recstudio_rsir.analysis.suite import metric_cell

    def row(method, rnd, vals):
        seeds = sorted(vals)
        return dict({m: metric_cell([vals[s] for s in seeds]) for m in R.METRICS}, method=method, round=rnd,
                    seeds=seeds)

    summary = {'rows': [row('base', 0, {1: 0.10, 2: 0.20}), row('rsir', 1, {1: 0.30, 2: 0.40}),
                        row('rsir', 2, {1: 0.50}), row('rsir_real', 1, {1: 0.30}), row('rsir_real', 2, {1: 0.35})]}
    series = R._series(summary)
    assert list(series) == ['rsir', 'rsir (seeds 1)', 'rsir_real (seeds 1)']
    full, part = series['rsir'], series['rsir (seeds 1)']
    assert [r['round'] for r in full] == [0, 1] and [r['ndcg@10']['mean'] for r in full] == pytest.approx([0.15, 0.35])
    assert [r['round'] for r in part] == [0, 1, 2]
    assert [r['ndcg@10']['mean'] for r in part] == pytest.approx([0.10, 0.30, 0.50])   # seed 1 at every round
    real = series['rsir_real (seeds 1)']
    assert [r['round'] for r in real] == [0, 1, 2]
    assert real[0]['ndcg@10']['mean'] == pytest.approx(0.10)                 # base over seed 1 only
    assert real[0]['seeds'] == [1] and summary['rows'][0]['seeds'] == [1, 2]  # the summary is not changed
    means = R._series(summary, split_seeds=False)     # the data plots: statistics kept as means, one line a method
    assert list(means) == ['rsir', 'rsir_real (seeds 1)'] and [r['round'] for r in means['rsir']] == [0, 1, 2]
    styles = R._styles(series)                    # one colour per method; its lines over fewer seeds dashed
    assert styles['rsir']['color'] == styles['rsir (seeds 1)']['color'] != styles['rsir_real (seeds 1)']['color']
    assert [styles[k]['linestyle'] for k in series] == ['-', '--', '-']
