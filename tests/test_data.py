import gzip
import logging

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


def test_embedded_is_deterministic_sparse_and_5core():
    a, b = D.make_embedded(3), D.make_embedded(3)
    assert a == b and a != D.make_embedded(4)
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
