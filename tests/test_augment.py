"""Heuristic augmentations (reorder, insert), approximate entropy, statistics and diagnostics."""
import json
import math
import subprocess

import numpy as np
import pytest

from recstudio_rsir.analysis import stats as A
from recstudio_rsir.algorithm import heuristics as G
from recstudio_rsir.data import sequence_stats

from test_end_to_end import ROOT, _cmd

CFG = {'seed': 0, 'copies': 1, 'reorder_ratio': 0.2, 'insert_rate': 0.2, 'insert_items': 'uniform'}


def _is_subsequence(short, long):
    it = iter(long)
    return all(x in it for x in short)


def test_reorder_shuffles_one_window_and_always_changes_the_row():
    rng = np.random.default_rng(1)
    src = list(range(1, 21))                                  # n = 20: window of 4
    for _ in range(200):
        out = G.reorder_copy(src, 0.2, rng)
        assert sorted(out) == src and out != src
        diff = [i for i, (a, b) in enumerate(zip(src, out)) if a != b]
        assert diff[-1] - diff[0] < 4                         # changes stay inside one 4-item window
    assert G.reorder_copy([7], 0.2, rng) is None
    two = G.reorder_copy([7, 8], 0.2, rng)                    # the smallest window is 2
    assert two == [8, 7]


def test_insert_keeps_the_row_in_order_and_adds_new_items():
    rng = np.random.default_rng(2)
    cdf = np.cumsum(np.r_[0.0, np.ones(99)]) / 99             # items 1..99 uniform
    src = [5, 9, 13, 2, 40, 41, 42, 43, 44, 45]
    for _ in range(200):
        out = G.insert_copy(src, 0.2, rng, cdf, max_len=50)
        assert len(out) == len(src) + 2 and _is_subsequence(src, out)
        new = [i for i in out if i not in src]
        assert len(new) == 2 and len(set(new)) == 2 and all(1 <= i <= 99 for i in new)
    # truncation keeps the last max_len items
    assert len(G.insert_copy(src, 0.2, rng, cdf, max_len=5)) == 5


def test_insert_popularity_draws_only_items_with_weight():
    rng = np.random.default_rng(3)
    w = np.zeros(50)
    w[[10, 20, 30]] = [1.0, 1.0, 2.0]
    cdf = np.cumsum(w) / w.sum()
    drawn = set()
    for _ in range(100):
        out = G.insert_copy([1, 2, 3, 4, 5], 0.2, rng, cdf, max_len=50)
        drawn.update(set(out) - {1, 2, 3, 4, 5})
    assert drawn == {10, 20, 30}


@pytest.mark.parametrize('kind', ['reorder', 'insert'])
def test_augment_rows_is_deterministic_and_round_dependent(kind):
    src = [list(range(1, 12)), [3, 4, 5], [6], [7, 8, 9, 10]]
    cfg = dict(CFG, copies=3)
    a = G.augment_rows(kind, src, src, 30, cfg, 50, 1)
    b = G.augment_rows(kind, src, src, 30, cfg, 50, 1)
    c = G.augment_rows(kind, src, src, 30, cfg, 50, 2)
    assert a == b and a != c
    rows, origin = a
    expected = sum(3 for s in src if kind == 'insert' or len(s) >= 2)
    assert len(rows) == expected and all(0 <= o < len(src) for o in origin)
    assert origin == sorted(origin)


def test_apen_matches_hand_computation():
    # distinct items: Phi^2 = ln(1/(N-1)), Phi^3 = ln(1/(N-2))
    assert A.apen([1, 2, 3]) == pytest.approx(math.log(1 / 2))
    assert A.apen([4, 8, 15, 16, 23, 42]) == pytest.approx(math.log(4 / 5))
    # periodic 1 2 1 2 1 2: windows of 2 are (1,2) x3 and (2,1) x2 among 5; windows of 3: two kinds, 2 each
    phi2 = (3 * math.log(3 / 5) + 2 * math.log(2 / 5)) / 5
    assert A.apen([1, 2, 1, 2, 1, 2]) == pytest.approx(phi2 - math.log(1 / 2))
    assert A.apen([7, 7, 7, 7]) == pytest.approx(0.0)
    assert A.apen([1, 2]) is None
    # r = 1 on 1 2 3 4: windows (1,2),(2,3),(3,4) are within 1 of their neighbours
    assert A.apen([1, 2, 3, 4], r=1) == pytest.approx(2 * math.log(2 / 3) / 3)
    s = A.apen_summary([[1, 2, 3], [7, 7, 7, 7], [1]])
    assert s['apen_sequences'] == 2
    assert s['apen'] == pytest.approx(math.log(1 / 2) / 2)
    assert s['apen_reciprocal'] == pytest.approx(2 / math.log(1 / 2))


def test_density_counts_users_not_sequences():
    st = sequence_stats([[1, 2, 3], [2, 3], [1, 2]], num_items=4, users=2)
    assert st['sequences'] == 3 and st['users'] == 2
    assert st['density'] == pytest.approx(7 / 8) and st['sparsity'] == pytest.approx(1 / 8)


def test_synthetic_diagnostics():
    real = [[1, 2, 3], [1, 2], [1, 4]]                        # counts: 1:3, 2:2, 3:1, 4:1
    syn = [[1, 2, 5], [4, 1]]
    d = A.synthetic_diagnostics(syn, [real[0], real[2]], real, num_items=7, top_share=1 / 6)
    assert d['synthetic_interactions'] == 5
    assert d['own_history_share'] == pytest.approx(4 / 5)    # 5 is new to row 0; 4, 1 are row 2's
    assert d['popularity_mean_synthetic'] == pytest.approx((3 + 2 + 0 + 1 + 3) / 5)
    assert d['popularity_mean_real'] == pytest.approx((3 + 2 + 1 + 3 + 2 + 3 + 1) / 7)
    assert d['top_items_share_synthetic'] == pytest.approx(2 / 5)   # top 1 of 6 items: item 1
    assert d['coverage_synthetic'] == pytest.approx(4 / 6) and d['coverage_real'] == pytest.approx(4 / 6)
    assert d['items_only_in_synthetic'] == 1


@pytest.mark.parametrize('kind', ['reorder', 'insert'])
def test_heuristic_rounds_run_through_the_loop(small_file, tmp_path, kind):
    """Copies are training-only rows of their source, counted and reported like RSIR's; a seed fixes them."""
    from recstudio_rsir.algorithm.loop import load_sequences
    outs = []
    for name in ('a', 'b'):
        out = tmp_path / name
        r = subprocess.run(_cmd(small_file, out, '--augment', kind, '--rsir.rounds', '1', '--epochs', '1'),
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(out)
    a, b = outs
    rows, origin = load_sequences(a / 'round_1' / 'synthetic.npz')
    assert (rows, origin) == load_sequences(b / 'round_1' / 'synthetic.npz')
    res = json.load(open(a / 'results.json'))
    gen = json.load(open(a / 'round_1' / 'generation.json'))
    st0 = json.load(open(a / 'round_0' / 'train_stats.json'))
    st1 = json.load(open(a / 'round_1' / 'train_stats.json'))
    assert gen['kept'] == len(rows) > 0 and st1['synthetic_sequences'] == len(rows)
    assert st1['sequences'] == st0['sequences'] + len(rows) and st1['users'] == st0['users']
    assert res['rounds'][1]['train_sequences'] == st1['sequences'] and 'apen' in res['rounds'][1]
    assert 0 < gen['diagnostics']['own_history_share'] <= 1
    m0 = json.load(open(a / 'round_0' / 'metrics.json'))
    m1 = json.load(open(a / 'round_1' / 'metrics.json'))
    assert m0['test']['users'] == m1['test']['users'] and m0['val']['users'] == m1['val']['users']
    # each copy relates to its source row (the real training rows, in file order)
    from recstudio_rsir.algorithm import loop
    from conftest import tiny_cfg
    ex = loop.Experiment(tiny_cfg(small_file, tmp_path / 'c'), str(tmp_path / 'c'))
    for row, o in zip(rows, origin):
        src = ex.real_train[o]
        if kind == 'reorder':
            assert sorted(row) == sorted(src) and row != src
        else:
            assert _is_subsequence(src, row) and len(row) > len(src)


def test_bad_augment_option_is_a_one_line_error(small_file, tmp_path):
    r = subprocess.run(_cmd(small_file, tmp_path / 'x', '--augment', 'insert', '--aug.insert_items', 'random'),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1
    assert 'aug.insert_items' in r.stderr and 'uniform, popularity' in r.stderr
    assert not (tmp_path / 'x').exists()


def test_combined_augmenter_is_rsir_rows_then_new_reorder_rows(small_file, tmp_path):
    """``--augment rsir+reorder``: RSIR's rows of the same round-0 model, then the Reordering copies
    that duplicate none of them (nor a training row), each with its source row as origin."""
    from recstudio_rsir.algorithm.loop import load_sequences
    got = {}
    for name in ('rsir', 'reorder', 'rsir+reorder'):
        out = tmp_path / name.replace('+', '_')
        r = subprocess.run(_cmd(small_file, out, '--augment', name, '--rsir.rounds', '1', '--epochs', '1'),
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        got[name] = load_sequences(out / 'round_1' / 'synthetic.npz')
    (rs, ro), (hs, ho), (cs, co) = got['rsir'], got['reorder'], got['rsir+reorder']
    n = len(rs)
    assert n > 0 and (cs[:n], co[:n]) == (rs, ro)
    taken = set(map(tuple, rs))
    rest = [(s, o) for s, o in zip(hs, ho) if tuple(s) not in taken]
    assert 0 < len(rest) < len(hs) + 1 and list(zip(cs[n:], co[n:])) == rest
    gen = json.load(open(tmp_path / 'rsir_reorder' / 'round_1' / 'generation.json'))
    assert set(gen['parts']) == {'rsir', 'reorder'} and gen['kept'] == len(cs)
    assert gen['parts']['rsir']['kept'] == n and gen['parts']['reorder']['kept'] == len(rest)


@pytest.mark.parametrize('name', ['rsir+rsir', 'rsir+nothing', 'rsir+'])
def test_bad_combination_is_a_one_line_error(small_file, tmp_path, name):
    r = subprocess.run(_cmd(small_file, tmp_path / 'x', '--augment', name), cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'joined by +' in r.stderr
    assert not (tmp_path / 'x').exists()


def test_synthetic_weight_reaches_training_and_only_augmented_rounds(small_file, tmp_path):
    """``--synthetic_weight 0``: round 0 (no augmented rows) trains exactly as with the default; round 1
    trains differently; the prefix regime refuses weights other than 1 in one line."""
    hist = {}
    for w in ('1', '0'):
        out = tmp_path / f'w{w}'
        r = subprocess.run(_cmd(small_file, out, '--augment', 'reorder', '--epochs', '2', '--synthetic_weight', w),
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        hist[w] = [[h['loss'] for h in json.load(open(out / f'round_{k}' / 'metrics.json'))['history']]
                   for k in (0, 1)]
    assert hist['1'][0] == hist['0'][0] and hist['1'][1] != hist['0'][1]
    r = subprocess.run(_cmd(small_file, tmp_path / 'p', '--train.regime', 'prefix', '--synthetic_weight', '0.5'),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'rsir.synthetic_weight' in r.stderr and r.stderr.count('\n') == 1
