"""RecStudio's own data: atomic .inter files read by their header, RecStudio dataset names."""
import os

import pytest

from recstudio_rsir import data as D
from recstudio_rsir.errors import UserError


def _interactions(seed=0):
    """(user, item, rating, timestamp) rows whose rating order differs from their time order."""
    import numpy as np
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, 41):
        n = int(rng.integers(4, 9))
        items = rng.choice(np.arange(1, 60), size=n, replace=False)
        times = np.sort(rng.choice(np.arange(10_000, 90_000), size=n, replace=False))
        ratings = rng.permutation(np.arange(1, n + 1))      # a shuffled order, not the time order
        rows += [(u, int(i), int(r), int(t)) for i, r, t in zip(items, ratings, times)]
    order = rng.permutation(len(rows))                       # file order is neither
    return [rows[k] for k in order]


def test_typed_header_is_read_by_name_not_position(tmp_path):
    rows = _interactions()
    inter = tmp_path / 'ml' / 'ml.inter'
    inter.parent.mkdir()
    inter.write_text('user_id:token\titem_id:token\trating:float\ttimestamp:float\n' +
                     ''.join(f'{u}\t{i}\t{r}\t{t}\n' for u, i, r, t in rows))
    # the same data as a sequence file, in time order
    by_user = {}
    for u, i, r, t in sorted(rows, key=lambda x: (x[0], x[3])):
        by_user.setdefault(u, []).append(i)
    seq = tmp_path / 'seq.txt'
    seq.write_text(''.join(f'{u} ' + ' '.join(map(str, s)) + '\n' for u, s in by_user.items()))
    from_inter = D.read_dataset(str(inter.parent), str(tmp_path / 'c1'))
    from_seq = D.read_dataset(str(seq), str(tmp_path / 'c2'))
    as_items = lambda d: {u: [i for i, _ in s] for u, s in d.items()}      # noqa: E731
    assert as_items(from_inter) == as_items(from_seq)
    # ... and not in rating order
    by_rating = {}
    for u, i, r, t in sorted(rows, key=lambda x: (x[0], x[2])):
        by_rating.setdefault(str(u), []).append(str(i))
    assert as_items(from_inter) != by_rating


def test_plain_header_and_column_order(tmp_path):
    p = tmp_path / 'x.inter'
    p.write_text('timestamp\titem_id\tuser_id\n3\t7\tu1\n1\t5\tu1\n2\t6\tu1\n')
    assert [i for i, _ in D.read_inter_file(str(p))['u1']] == ['5', '6', '7']


def test_headerless_file_keeps_three_columns(tmp_path):
    p = tmp_path / 'y.inter'
    p.write_text('1\t10\t3\n1\t11\t1\n1\t12\t2\n')
    assert [i for i, _ in D.read_inter_file(str(p))['1']] == ['11', '12', '10']
    bad = tmp_path / 'z.inter'
    bad.write_text('1\t10\t3\t5\n')
    with pytest.raises(UserError, match=r'z.inter:1: expected 3 fields'):
        D.read_inter_file(str(bad))


@pytest.mark.parametrize('text, match', [
    ('user_id:token\titem_id:token\ttimestamp:float\n1\t2\n', r':2: expected 3 fields'),
    ('user_id:token\titem_id:token\ttimestamp:float\n1\t2\tnoon\n', r':2: timestamp .noon. is not a number'),
    ('rating:float\ttimestamp:float\n1\t2\n', r':1: the header must name a user column'),
    ('', 'file is empty'),
])
def test_bad_inter_files_are_one_line_errors(tmp_path, text, match):
    p = tmp_path / 'bad.inter'
    p.write_text(text)
    with pytest.raises(UserError, match=match) as e:
        D.read_inter_file(str(p))
    assert '\n' not in str(e.value)


def test_recstudio_dataset_names(tmp_path):
    from recstudio_rsir import host
    if host.flavour() == 'source':
        seqs = D.read_dataset('ml-100k', str(tmp_path), host.named_dataset_file)
        assert len(seqs) == 943                                     # MovieLens-100K's users
        assert sum(map(len, seqs.values())) == 100_000
        s = seqs['196']
        assert [t for _, t in s] == sorted(t for _, t in s)           # time order
    else:
        with pytest.raises(UserError, match=r'ml-100k: the installed RecStudio \(pypi flavour\) does not ship '
                                            r'.*put its atomic file ml-100k.inter'):
            D.read_dataset('ml-100k', str(tmp_path), host.named_dataset_file)
    with pytest.raises(UserError, match='not a RecStudio dataset name; accepted: .*ml-100k'):
        host.named_dataset_file('no-such-dataset', str(tmp_path))
    assert not os.listdir(tmp_path) or all(not f.endswith('.tmp') for f in os.listdir(tmp_path))
