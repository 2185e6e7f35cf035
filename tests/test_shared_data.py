"""Checks on the real benchmark files (skipped with a message when ../shared/data is absent)."""
from conftest import need_shared_data

from recstudio_rsir import data as D


def test_beauty_file_reads_with_published_statistics():
    path = need_shared_data('Beauty.txt.gz')
    seqs = D.read_sequence_file(path)
    st = D.sequence_stats([[i for i, _ in s] for s in seqs.values()])
    assert (st['sequences'], st['items'], st['interactions']) == (22363, 12101, 198502)
    assert abs(st['mean_length'] - 8.88) < 0.01


def test_toys_file_reads_with_published_statistics():
    path = need_shared_data('Toys_and_Games.txt.gz')
    seqs = D.read_sequence_file(path)
    st = D.sequence_stats([[i for i, _ in s] for s in seqs.values()])
    assert (st['sequences'], st['items'], st['interactions']) == (19412, 11924, 167597)
