import gzip
import logging
import os

import numpy as np
import pytest

from recstudio_rsir import data as D
from recstudio_rsir.errors import UserError


def test_sequence_file_plain_and_gz(tmp_path):
    text = '1 10 11 12\n2 11 12 13 14\n'
    (tmp_path / 'a.txt').write_text(text)
    with gzip.open(tmp_path / 'a.txt.gz', 'wt') as f:
        f.write(text)
    a = D.read_sequence_file(str(tmp_path / 'a.txt'))
    b = D.read_sequence_file(str(tmp_path / 'a.txt.gz'))
    assert a == b
    assert [i for i, _ in a['2']] == ['11', '12', '13', '14']


@pytest.mark.parametrize('content,needle', [
    ('1 10 11\n2 x 12\n', ':2: item'),
    ('', 'empty'),
    ('1 10 11\n3\n', ':2: user 3 has no items'),
    ('1 10 11\n1 12 13\n', ':2: user 1 appears'),
])
def test_sequence_file_errors_name_file_and_line(tmp_path, content, needle):
    p = tmp_path / 'bad.txt'
    p.write_text(content)
    with pytest.raises(UserError) as e:
        D.read_sequence_file(str(p))
    assert str(p) in str(e.value) and needle in str(e.value)


def test_missing_file():
    with pytest.raises(UserError, match='no such file'):
        D.read_sequence_file('/nonexistent/x.txt')


def test_table_file_sorted_by_time_and_errors(tmp_path):
    p = tmp_path / 'a.csv'
    p.write_text('user,item,timestamp\n1,5,30\n1,6,10\n1,7,20\n')
    s = D.read_table_file(str(p))
    assert [i for i, _ in s['1']] == ['6', '7', '5']
    p.write_text('user,item,timestamp\n1,5,30\n1,6\n')
    with pytest.raises(UserError, match=r'a.csv:3: expected 3 fields'):
        D.read_table_file(str(p))
    p.write_text('uid,iid\n1,2\n')
    with pytest.raises(UserError, match=r'a.csv:1: header'):
        D.read_table_file(str(p))
    t = tmp_path / 'a.tsv'
    t.write_text('user\titem\n1\t2\n1\t3\n')
    assert [i for i, _ in D.read_table_file(str(t))['1']] == ['2', '3']


def test_short_users_dropped_with_counted_warning(caplog):
    seqs = {'1': [('1', 0), ('2', 1), ('3', 2)], '2': [('1', 0), ('2', 1)], '3': [('4', 0)]}
    with caplog.at_level(logging.WARNING, logger='recstudio_rsir'):
        kept = D.drop_short_users(seqs, 3, 'f.txt')
    assert list(kept) == ['1']
    assert 'dropped 2 of 3 users' in caplog.text


def test_planted_is_deterministic_sparse_and_5core():
    a, b = D.make_planted(3), D.make_planted(3)
    assert a == b and a != D.make_planted(4)
    st = D.sequence_stats([[i for i, _ in s] for s in a.values()])
    assert 2000 <= st['sequences'] <= 4000
    assert 5 <= st['mean_length'] <= 10
    assert st['density'] < 0.02
    counts = {}
    for s in a.values():
        assert len(s) >= 5
        for i, _ in s:
            counts[i] = counts.get(i, 0) + 1
    assert min(counts.values()) >= 5


def test_embedded_is_the_miniature_and_matches_the_real_files_statistics(tmp_path):
    """The default ``embedded`` dataset is the miniature (issue #16 item 1): deterministic per seed, and
    beside Beauty and Toys (docs/embedded.md) on the statistics it was designed by -- users per item,
    length quantiles, no repeats, pair recurrence inside their band, popularity concentration a little
    below it (their band is top-10% share 0.36-0.43, Gini 0.44-0.50); the planted dataset is not (its
    consecutive pairs recur far more often)."""
    from recstudio_rsir.analysis.stats import dataset_profile
    a = D.make_miniature(1)
    assert a == D.make_miniature(1) and a != D.make_miniature(2)
    p = dataset_profile([[i for i, _ in s] for s in a.values()])
    assert 3000 <= p['users'] <= 4500 and 12 <= p['interactions_per_item'] <= 20
    assert (p['length_p25'], p['length_median'], p['length_p75']) == (5, 6, 9) and 12 <= p['length_p90'] <= 16
    assert 0.25 <= p['top10_item_share'] <= 0.45 and 0.35 <= p['item_gini'] <= 0.52
    assert p['repeat_share'] == 0 and 0.1 <= p['pair_recurrence'] <= 0.21
    planted = dataset_profile([[i for i, _ in s] for s in D.make_planted(1).values()])
    assert planted['pair_recurrence'] > 0.4
    name, folder, desc = D.resolve_dataset('embedded:1', str(tmp_path))
    assert name == 'embedded1' and 'miniature' in desc
    rows = D.read_inter_file(os.path.join(folder, name + '.inter'))
    assert {u: [i for i, _ in s] for u, s in rows.items()} == {u: [i for i, _ in s] for u, s in a.items()}
    name, _, desc = D.resolve_dataset('planted:1', str(tmp_path))
    assert name == 'planted1' and 'planted' in desc


def test_miniature_time_trend_keeps_each_user_among_the_items_on_sale_in_their_era():
    """With eras (issue #16 item 1) every draw but a complement is among the items on sale in the
    user's current era, and complements come from their item's era: with ``life=1`` and users who never
    move on, users and items split into exactly one group per era (connected components of the
    user-item graph); without a trend they form one group.  ``n_eras=1`` is the old generator."""
    def groups(seqs):
        parent = {}

        def find(x):
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x
        for s in seqs.values():
            for i, _ in s[1:]:
                parent[find(i)] = find(s[0][0])
        return len({find(i) for s in seqs.values() for i, _ in s})
    kw = dict(n_users=1500, n_items=1200)
    plain = D.make_miniature(3, n_eras=1, **kw)
    assert plain == D.make_miniature(3, n_eras=1, life=5, p_advance=0.9, **kw)
    split = D.make_miniature(3, n_eras=4, life=1, p_advance=0.0, **kw)
    assert split == D.make_miniature(3, n_eras=4, life=1, p_advance=0.0, **kw) != plain
    assert groups(plain) == 1 and groups(split) == 4
    assert groups(D.make_miniature(3, n_eras=4, life=2, p_advance=0.0, **kw)) == 1   # overlapping eras join
    assert all(len(s) >= 5 and len({i for i, _ in s}) == len(s) for s in split.values())


def test_dataset_profile_by_hand():
    from recstudio_rsir.analysis.stats import dataset_profile
    # items: a x3, b x2, c x1, d x1, e x1 ; pairs: (a,b) twice, others once
    p = dataset_profile([['a', 'b', 'c'], ['a', 'b', 'd'], ['a', 'e', 'b', 'b']])
    assert p['users'] == 3 and p['items'] == 5 and p['interactions'] == 10
    assert p['length_median'] == 3 and p['length_max'] == 4
    assert p['repeat_share'] == pytest.approx(1 / 10)                       # the second b of row 3
    assert p['top10_item_share'] == pytest.approx(4 / 10)                   # top 1 item (b: 4) of 5
    counts = np.array([1, 1, 1, 3, 4], dtype=float)
    gini = sum(abs(x - y) for x in counts for y in counts) / (2 * 5 * counts.sum())
    assert p['item_gini'] == pytest.approx(gini)
    assert p['pair_recurrence'] == pytest.approx(2 / 7)                     # (a,b) x2 of 7 pairs


def test_sequence_stats_by_hand():
    st = D.sequence_stats([[1, 2, 3], [2, 3]], num_items=4)
    assert st['sequences'] == 2 and st['interactions'] == 5
    assert st['density'] == pytest.approx(5 / 8)
    assert st['sparsity'] == pytest.approx(3 / 8)
    assert st['mean_length'] == 2.5


def test_resolve_dataset_converts_file_once(tmp_path, small_file):
    name, folder, _ = D.resolve_dataset(small_file, str(tmp_path / 'cache'))
    inter = tmp_path / 'cache' / name / f'{name}.inter'
    assert inter.exists()
    assert inter.read_text().splitlines()[0] == 'user_id:token\titem_id:token\ttimestamp:float'
    with pytest.raises(UserError, match='accepted'):
        D.resolve_dataset('', str(tmp_path))


def test_embedded_fidelity_writes_the_miniature_it_profiles(tmp_path, capsys):
    """benchmarks/embedded_fidelity.py --miniature KEY=VALUE --write FILE: the file holds exactly the
    generator's sequences with those parameters (what docs/embedded.md trains on); a wrong key or value
    stops with one line naming the accepted keys."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'embedded_fidelity', os.path.join(os.path.dirname(__file__), '..', 'benchmarks', 'embedded_fidelity.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / 'mini.txt'
    bench.main(['--seed', '2', '--miniature', 'n_users=600', '--miniature', 'n_items=500',
                '--miniature', 'n_eras=3', '--miniature', 'p_advance=0.2', '--write', str(out)])
    table = capsys.readouterr().out
    want = D.make_miniature(2, n_users=600, n_items=500, n_eras=3, p_advance=0.2)
    assert f"| users |" in table and f"{len(want):,}" in table.split('| users |')[1].split('\n')[0]
    got = D.read_sequence_file(str(out))
    assert sorted([i for i, _ in s] for s in got.values()) == sorted([i for i, _ in s] for s in want.values())
    for bad in ('colour=3', 'n_eras=many'):
        with pytest.raises(SystemExit) as e:
            bench.main(['--miniature', bad])
        assert bad in str(e.value) and ('n_eras' in str(e.value) or 'not a number' in str(e.value))


def test_a_run_folder_with_embedded_data_of_the_old_generator_is_refused(tmp_path):
    """Before issue #16 `-d embedded` made the planted data; a run folder from then holds that data
    under the same cache name.  Resolving `-d embedded` there must refuse (its models were trained on
    the old data) rather than describe the old data as the miniature, and must leave the folder as it was."""
    root = str(tmp_path / 'dataset')
    old = os.path.join(root, 'embedded0')
    D._cached_inter(old, 'embedded0', lambda: D.make_planted(0))
    before = {f: open(os.path.join(old, f), 'rb').read() for f in os.listdir(old)}
    with pytest.raises(UserError, match='older generator.*new --output'):
        D.resolve_dataset('embedded', root)
    assert {f: open(os.path.join(old, f), 'rb').read() for f in os.listdir(old)} == before
    # the folder of today's generator resolves, and again from its cache
    fresh = str(tmp_path / 'fresh')
    assert D.resolve_dataset('embedded', fresh)[2].startswith('embedded miniature')
    assert D.resolve_dataset('embedded', fresh)[0] == 'embedded0'
    # `-d planted` in the old folder's root is a different cache name and works
    assert D.resolve_dataset('planted', root)[0] == 'planted0'


def test_inter_sha256_is_the_digest_of_the_written_file(tmp_path):
    seqs = {'u1': [('a', 1.0), ('b', 2.0)], 'u2': [('c', 3.0)]}
    path = D.write_atomic(seqs, str(tmp_path), 'x')
    from recstudio_rsir.atomic import file_digest
    assert file_digest(path)['sha256'] == D.inter_sha256(seqs)
    assert D.inter_sha256({'u1': [('a', 1.0)]}) != D.inter_sha256(seqs)
