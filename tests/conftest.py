import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data', 'seqrec')


def small_sequences(seed=0, n_users=400, n_items=250):
    from recstudio_rsir import data as D
    return D.make_planted(seed, n_users=n_users, n_items=n_items, n_topics=8)


def write_seq_file(path, seqs):
    with open(path, 'w') as f:
        for u, s in seqs.items():
            f.write(u + ' ' + ' '.join(i for i, _ in s) + '\n')
    return str(path)


@pytest.fixture
def small_file(tmp_path):
    return write_seq_file(tmp_path / 'small.txt', small_sequences())


def tiny_cfg(dataset, out, **over):
    from recstudio_rsir import config as C
    flags = {'epochs': 2, 'patience': 2, 'batch_size': 128, 'num_negatives': 32, 'model.embed_dim': 16,
             'model.hidden_size': 32, 'model.layer_num': 1, 'rsir.m': 2, 'num_threads': 1}
    flags.update(over)
    return C.resolve(flags=flags, top={'model_name': 'SASRec', 'dataset': dataset, 'output': str(out)})


@pytest.fixture
def experiment(small_file, tmp_path):
    from recstudio_rsir.algorithm import loop
    cfg = tiny_cfg(small_file, tmp_path / 'out')
    torch.set_num_threads(1)
    return loop.Experiment(cfg, str(tmp_path / 'out'))


def need_shared_data(name):
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f'{path} is absent: the shared benchmark data (../shared/data/seqrec) is not beside this checkout')
    return path
