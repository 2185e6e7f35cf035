"""Host layer: flavour-specific paths (both config shapes), shims, training-only injection."""

import pytest
import torch

from recstudio_rsir import host
from recstudio_rsir.errors import UserError

# The GitHub source's basemodel.yaml groups (ustcml/RecStudio, 2024): the nested flavour's shape.
NESTED = {
    'data': {'max_seq_len': 20, 'split_ratio': [0.8, 0.1, 0.1]},
    'model': {'embed_dim': 64, 'hidden_size': 128, 'layer_num': 2, 'head_num': 2, 'dropout_rate': 0.5,
              'activation': 'gelu', 'layer_norm_eps': 1e-12},
    'train': {'learning_rate': 0.001, 'batch_size': 1024, 'epochs': 1000, 'gpu': 1, 'seed': 2022,
              'num_threads': 10, 'early_stop_patience': 10},
    'eval': {'cutoff': [10, 20, 5], 'val_metrics': ['ndcg', 'recall']},
}


def test_flavour_is_detected_by_feature():
    host.apply_shims()
    import recstudio.data.dataset as ds
    expected = 'source' if hasattr(ds, 'TripletDataset') else 'pypi'
    assert host.flavour() == expected


FLAT = {'embed_dim': 64, 'hidden_size': 128, 'layer_num': 2, 'head_num': 2, 'dropout_rate': 0.5,
        'learning_rate': 0.001, 'batch_size': 1024, 'epochs': 1000, 'gpu': [0], 'seed': 2022,
        'num_threads': 10, 'early_stop_patience': 10, 'max_seq_len': 20}


def test_merge_host_config_flat():
    """The PyPI flavour's flat shape (a fixed dict, so the test means the same on both flavours)."""
    conf = host.merge_host_config(FLAT, {'layer_num': 1}, {'batch_size': 64, 'seed': 7, 'patience': 3,
                                                           'regime': 'user'}, 30)
    assert conf['layer_num'] == 1 and conf['batch_size'] == 64 and conf['seed'] == 7
    assert conf['early_stop_patience'] == 3 and conf['gpu'] is None and conf['max_seq_len'] == 30
    assert 'regime' not in conf  # plugin-only keys stay out of the host config
    assert FLAT['gpu'] == [0] and FLAT['layer_num'] == 2  # the input is not modified
    assert not host.is_nested(conf)
    assert host.config_value(conf, 'layer_num') == 1


def test_host_sasrec_config_has_the_installed_flavours_shape():
    _, conf = host.host_model_class('SASRec')
    assert host.is_nested(conf) == (host.flavour() == 'source')
    assert 'layer_num' in host.model_option_keys(conf)


def test_merge_host_config_nested():
    conf = host.merge_host_config(NESTED, {'layer_num': 1, 'embed_dim': 32},
                                  {'batch_size': 64, 'learning_rate': 0.01, 'patience': 4}, 30)
    assert host.is_nested(conf)
    assert conf['model']['layer_num'] == 1 and conf['model']['embed_dim'] == 32
    assert conf['train']['batch_size'] == 64 and conf['train']['learning_rate'] == 0.01
    assert conf['train']['early_stop_patience'] == 4
    assert conf['train']['gpu'] is None          # default 1 fails on a machine without GPU
    assert conf['data']['max_seq_len'] == 30
    assert 'batch_size' not in conf and NESTED['train']['gpu'] == 1
    assert host.config_value(conf, 'layer_num') == 1
    assert host.config_value(conf, 'batch_size') == 64


def test_dgl_placeholder_fails_clearly():
    host.apply_shims()
    import sys
    if not isinstance(sys.modules.get('dgl'), host._MissingDGL):
        pytest.skip('dgl is installed: the placeholder is not used')
    import dgl
    import recstudio.model.module.graphmodule  # noqa: F401  (imports with the placeholder)
    with pytest.raises(UserError, match='needs the `dgl` package'):
        dgl.graph(([0], [1]))


def test_shims_make_getargspec_available():
    host.apply_shims()
    import inspect
    assert inspect.getargspec(lambda a, b=1: None).args == ['a', 'b']


def _build_pair(experiment, synthetic):
    plain = host.build(experiment.pristine)
    aug = host.build(experiment.pristine, synthetic)
    return plain, aug


@pytest.mark.parametrize('regime', ['user', 'prefix'])
def test_synthetic_rows_are_training_only(small_file, tmp_path, regime):
    from conftest import tiny_cfg
    from recstudio_rsir.algorithm import loop
    ex = loop.Experiment(tiny_cfg(small_file, tmp_path / 'o', **{'train.regime': regime}), str(tmp_path / 'o'))
    synthetic = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12]]
    (tr0, va0, te0), (tr1, va1, te1) = _build_pair(ex, synthetic)
    assert torch.equal(va0.data_index, va1.data_index)
    assert torch.equal(te0.data_index, te1.data_index)
    start = ex.pristine.num_users
    assert (va1.data_index[:, 0] < start).all() and (te1.data_index[:, 0] < start).all()
    syn_rows = tr1.data_index[tr1.data_index[:, 0] >= start]
    expected = len(synthetic) if regime == 'user' else sum(len(s) - 1 for s in synthetic)
    assert len(syn_rows) == expected and len(tr1) == len(tr0) + expected
    # the synthetic rows hold exactly the synthetic items
    items = tr1.inter_feat.get_col(tr1.fiid)
    for k, s in enumerate(synthetic):
        rows = tr1.data_index[tr1.data_index[:, 0] == start + k]
        lo, hi = int(rows[:, 1].min()), int(rows[:, 2].max())
        assert items[lo:hi + 1].tolist() == s
    # the pristine dataset is untouched
    assert ex.pristine.num_users == start


def test_item_scores_cover_every_item(experiment):
    tr, va, _ = host.build(experiment.pristine)
    model = experiment.new_model(tr).eval()
    batch = next(iter(va.eval_loader(batch_size=8, num_workers=0)))
    q = host.encode_last(model, batch)
    s = host.item_scores(model, q, tr.num_items)
    assert s.shape == (len(q), tr.num_items) and torch.isinf(s[:, 0]).all()
    full = host.encode_all(model.train(), next(iter(tr.train_loader(batch_size=4, shuffle=False, num_workers=0))))
    assert full.dim() == 3


def test_item_scores_when_batch_equals_item_range(experiment):
    """RecStudio's scorers treat len(query) == len(items) as one item per query; item_scores must
    still return the full [B, C] matrix (a batch of exactly that many rows happens in practice)."""
    tr, _, _ = host.build(experiment.pristine)
    model = experiment.new_model(tr).eval()
    vecs = host.item_vectors(model, tr.num_items)
    lo, hi = 5, 25
    q = torch.randn(hi - lo, vecs.shape[1])
    s = host.item_scores(model, q, tr.num_items, vecs, lo, hi)
    assert s.shape == (hi - lo, hi - lo)
    assert torch.allclose(s, q @ vecs[lo:hi].T, atol=1e-5)
    full = host.item_scores(model, q, tr.num_items, vecs)
    assert torch.equal(full[:, lo:hi], s) or torch.allclose(full[:, lo:hi], s, atol=1e-5)


def test_round0_splits_come_from_the_trial_build_once_and_equal_a_fresh_build(experiment):
    """The Experiment builds the round-0 splits once for its trial model and hands that build to the
    first ``splits([])`` (a build deep-copies the dataset).  Building a model drops the columns it does
    not use (RecStudio's ``_init_model``: timestamp here), so the kept build must equal a fresh build on
    which a model was built too (what round 0 itself does, and dropping is idempotent); and a build is
    never handed out twice."""
    cached = experiment._round0
    fresh = host.build(experiment.pristine)
    assert 'timestamp' in fresh[0].inter_feat.fields and 'timestamp' not in cached[0].inter_feat.fields
    experiment.new_model(fresh[0])
    for a, b in zip(cached, fresh):
        assert torch.equal(a.data_index, b.data_index)
        for frame in ('inter_feat', 'item_feat', 'user_feat'):
            fa, fb = getattr(a, frame, None), getattr(b, frame, None)
            assert (fa is None) == (fb is None)
            if fa is not None:
                assert sorted(fa.fields) == sorted(fb.fields)
                for f in fa.fields:
                    assert torch.equal(fa.get_col(f), fb.get_col(f)), (frame, f)
    assert experiment.splits([]) is cached
    assert experiment.splits([]) is not cached and experiment._round0 is None


def test_splits_with_synthetic_rows_never_use_the_trial_build(experiment):
    cached = experiment._round0
    tr, _, _ = experiment.splits([[1, 2, 3]])
    assert tr is not cached[0] and len(tr) == len(cached[0]) + 1
    assert experiment._round0 is None          # dropped, not kept for later
