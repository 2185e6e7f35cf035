"""HSTU and CL4SRec: architecture properties, augmentations, the contrastive loss, the registry."""
import math

import pytest
import torch

from recstudio_rsir.algorithm import generation as G
from recstudio_rsir import host, models
from recstudio_rsir.algorithm import training
from recstudio_rsir.errors import UserError

from conftest import tiny_cfg


def _experiment(small_file, tmp_path, name, **over):
    from recstudio_rsir import config as C
    from recstudio_rsir.algorithm import loop
    cfg = tiny_cfg(small_file, tmp_path / 'out', **over)
    cfg['model_name'] = name
    cfg['model'] = dict(C.model_yaml(name).get('model', {}))
    if name == 'HSTU':
        cfg['model'].update(num_blocks=2, dropout_rate=0.0)
    return loop.Experiment(cfg, str(tmp_path / 'out'))


@pytest.fixture
def hstu(small_file, tmp_path):
    ex = _experiment(small_file, tmp_path, 'HSTU')
    tr, _, _ = ex.splits([])
    model = ex.new_model(tr).eval()
    torch.manual_seed(0)
    with torch.no_grad():   # make the relative bias matter
        for b in model.query_encoder.blocks:
            b.rel_bias.w.normal_(0, 1.0)
    return ex, tr, model


def _run(model, ids):
    lens = (ids > 0).sum(1)
    return model.query_encoder({'in_item_id': ids, 'seqlen': lens}, need_pooling=False)


def test_hstu_is_causal(hstu):
    _, tr, model = hstu
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, tr.num_items, (4, 12), generator=g)
    out = _run(model, ids)
    for t in (3, 7, 11):
        changed = ids.clone()
        changed[:, t] = torch.randint(1, tr.num_items, (4,), generator=g)
        out2 = _run(model, changed)
        assert torch.allclose(out[:, :t], out2[:, :t], atol=1e-6)
        assert not torch.allclose(out[:, t], out2[:, t], atol=1e-4)


def test_hstu_padding_invariance(hstu):
    _, tr, model = hstu
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, tr.num_items, (3, 6), generator=g)
    ids[1, 4:] = 0
    ids[2, 2:] = 0
    padded = torch.cat([ids, torch.zeros(3, 9, dtype=torch.long)], 1)
    a, b = _run(model, ids), _run(model, padded)
    valid = ids > 0
    assert torch.allclose(a[valid], b[:, :6][valid], atol=1e-6)
    assert (b[:, 6:] == 0).all() and (a[~valid] == 0).all()       # padded rows stay zero
    lens = valid.sum(1)
    qa = host.encode_last(model, {'in_item_id': ids, 'seqlen': lens})
    qb = host.encode_last(model, {'in_item_id': padded, 'seqlen': lens})
    assert torch.allclose(qa, qb, atol=1e-6)


def test_hstu_relative_bias_equals_loop(hstu):
    _, _, model = hstu
    rb = model.query_encoder.blocks[0].rel_bias
    N = rb.max_len
    for L in (1, 5, N):
        got = rb(L)
        want = torch.empty(L, L)
        for i in range(L):
            for j in range(L):
                want[i, j] = rb.w[N - 1 + j - i]
        assert torch.equal(got, want)


def test_hstu_gradients_reach_every_projection(hstu):
    ex, tr, model = hstu
    model.train()
    batch = next(iter(tr.train_loader(batch_size=32, shuffle=False, num_workers=0)))
    loss = training.user_regime_loss(model, batch, tr.fiid, tr.num_items, 16, torch.Generator().manual_seed(0))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    names = {n for n, _ in model.named_parameters()}
    assert any(n.endswith('uvqk') for n in names) and any(n.endswith('o.weight') for n in names)
    assert any(n.endswith('rel_bias.w') for n in names)


def test_hstu_output_is_normalised_and_scored_by_scaled_cosine(hstu):
    _, tr, model = hstu
    ids = torch.randint(1, tr.num_items, (5, 7))
    q = host.encode_last(model, {'in_item_id': ids, 'seqlen': torch.full((5,), 7)})
    assert torch.allclose(q.norm(dim=-1), torch.ones(5), atol=1e-5)
    vecs = host.item_vectors(model, tr.num_items)
    s = host.item_scores(model, q, tr.num_items, vecs)
    want = q @ torch.nn.functional.normalize(vecs[1:], dim=-1).T / 0.05
    assert torch.allclose(s[:, 1:], want, atol=1e-4) and torch.isinf(s[:, 0]).all()


def test_hstu_time_bias_is_rejected(small_file, tmp_path):
    ex = _experiment(small_file, tmp_path, 'HSTU')
    ex.cfg['model']['time_bias'] = True
    tr, _, _ = ex.splits([])
    with pytest.raises(UserError, match='time_bias'):
        ex.new_model(tr)


# ----------------------------------------------------------------------------- CL4SRec

from recstudio_rsir.models import cl4srec as CL  # noqa: E402


def _batch(B=6, L=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(2, L + 1, (B,), generator=g)
    ids = torch.randint(1, 50, (B, L), generator=g) * (torch.arange(L) < lens.unsqueeze(1))
    return ids, lens


def test_crop_keeps_a_contiguous_window():
    ids, lens = _batch()
    u = torch.rand(len(ids))
    out, n = CL.crop(ids, lens, 0.5, u)
    for i in range(len(ids)):
        k = max(1, int(math.floor(0.5 * int(lens[i]))))
        assert int(n[i]) == k
        row, src = out[i, :k].tolist(), ids[i, :lens[i]].tolist()
        assert any(src[s:s + k] == row for s in range(len(src) - k + 1))
        assert (out[i, k:] == 0).all()


def test_mask_replaces_the_right_number_of_items():
    ids, lens = _batch()
    out, n = CL.mask(ids, lens, 0.7, torch.rand(ids.shape), mask_id=999)
    assert torch.equal(n, lens)
    for i in range(len(ids)):
        m = out[i] == 999
        assert int(m.sum()) == int(math.floor(0.7 * int(lens[i])))
        assert not m[lens[i]:].any()
        assert torch.equal(out[i][~m], ids[i][~m])


def test_reorder_shuffles_only_a_window():
    ids, lens = _batch(B=20, seed=3)
    u, r = torch.rand(len(ids)), torch.rand(ids.shape)
    out, _ = CL.reorder(ids, lens, 0.5, u, r)
    for i in range(len(ids)):
        n = int(lens[i])
        size = max(1, int(math.floor(0.5 * n)))
        start = int(math.floor(float(u[i]) * (n - size + 1)))
        a, b = ids[i].tolist(), out[i].tolist()
        assert a[:start] == b[:start] and a[start + size:] == b[start + size:]
        assert sorted(a[start:start + size]) == sorted(b[start:start + size])


def test_augment_is_seeded_and_keeps_padding_out():
    ids, lens = _batch(B=30)
    torch.manual_seed(5)
    a = CL.augment(ids, lens, 999, 0.2, 0.7, 0.2)
    torch.manual_seed(5)
    b = CL.augment(ids, lens, 999, 0.2, 0.7, 0.2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    out, n = a
    assert ((out > 0).sum(1) == n).all()        # no hole inside a view, nothing past its length


def test_info_nce_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    got = CL.info_nce(z1, z2, 0.5)
    z = torch.cat([z1, z2])
    total = 0.0
    for i in range(8):
        pos = (i + 4) % 8
        logits = [float(z[i] @ z[j]) / 0.5 for j in range(8) if j != i]
        total += -(float(z[i] @ z[pos]) / 0.5 - math.log(sum(math.exp(x) for x in logits)))
    assert abs(float(got) - total / 8) < 1e-5
    zn = torch.nn.functional.normalize(z1, dim=-1) * 3
    assert CL.info_nce(zn, zn, 1.0) < CL.info_nce(zn, zn[[1, 2, 3, 0]], 1.0)   # matching views score better
    # cosine: the same loss on unit vectors, whatever the norms
    scaled = CL.info_nce(z1 * 7, z2 * 0.1, 0.5, 'cosine')
    unit = CL.info_nce(torch.nn.functional.normalize(z1, dim=-1), torch.nn.functional.normalize(z2, dim=-1), 0.5)
    assert abs(float(scaled) - float(unit)) < 1e-5


def test_view_vector_pools_mean_or_last_over_the_view_only():
    out = torch.arange(2 * 4 * 2, dtype=torch.float).view(2, 4, 2)     # [B=2, L=4, D=2]
    lens = torch.tensor([2, 3])
    mean = CL.view_vector(out, lens, 'mean')
    assert torch.allclose(mean[0], out[0, :2].mean(0)) and torch.allclose(mean[1], out[1, :3].mean(0))
    last = CL.view_vector(out, lens, 'last')
    assert torch.equal(last, torch.stack([out[0, 1], out[1, 2]]))


def test_cl4srec_mask_token_is_never_a_candidate(small_file, tmp_path):
    ex = _experiment(small_file, tmp_path, 'CL4SRec')
    tr, _, _ = ex.splits([])
    model = ex.new_model(tr)
    assert model.item_encoder.num_embeddings == tr.num_items + 1        # the extra mask row
    assert host.item_vectors(model, tr.num_items).shape[0] == tr.num_items
    with torch.no_grad():   # make the mask token the best item for every query
        model.item_encoder.weight[tr.num_items] = 100.0
    scorer = G.ModelScorer(model, tr.num_items, ex.max_seq_len)
    seqs, _ = G.generate_batched(scorer, ex.real_train[:20], G.GenConfig(m=2, p=0.0, tau=math.inf, max_len=8))
    assert max(max(s) for s in seqs) < tr.num_items
    batch = next(iter(tr.train_loader(batch_size=16, shuffle=False, num_workers=0)))
    model.train()
    aux = host.auxiliary_loss(model, batch)
    assert aux is not None and torch.isfinite(aux) and aux.requires_grad


def test_registry_plugin_first_then_host():
    cls, conf = models.resolve('HSTU')
    assert cls.__name__ == 'HSTU' and 'embed_dim' in (conf.get('model', conf))
    assert models.resolve('hstu')[0] is cls
    assert models.resolve('CL4SRec')[0].__name__ == 'CL4SRec'
    assert models.resolve('SASRec')[0].__module__.startswith('recstudio.')
    with pytest.raises(UserError, match='HSTU'):
        models.resolve('NoSuchModel')


def test_source_flavour_paths(monkeypatch):
    """GitHub-source flavour: -m CL4SRec is still the plugin's class (the host's would ignore the
    plugin's options), a host model's own contrastive term is used in the user regime (weighted by
    the nested model.cl_weight), plugin models read nested configs."""
    class HostCL4SRec:
        pass
    monkeypatch.setattr(host, 'host_model_class', lambda name: (HostCL4SRec, {'model': {}, 'train': {}})
                        if name == 'CL4SRec' else None)
    from recstudio_rsir.models.cl4srec import CL4SRec
    assert models.resolve('CL4SRec')[0] is CL4SRec

    class FakeAug:
        def __call__(self, batch, encoder):
            assert encoder == 'enc'
            return {'cl_loss': torch.tensor(2.0)}

    class SourceModel:
        config = {'model': {'cl_weight': 0.25}, 'train': {}, 'data': {}, 'eval': {}}
        augmentation_model = FakeAug()
        query_encoder = 'enc'
    assert float(host.auxiliary_loss(SourceModel(), {})) == 0.5
    assert host.auxiliary_loss(object(), {}) is None

    from recstudio_rsir.models.hstu import HSTU
    fake = type('M', (), {'config': {'model': {'num_blocks': 3}, 'train': {}, 'data': {}, 'eval': {}}})()
    assert HSTU._hp(fake, 'num_blocks') == 3 and HSTU._hp(fake, 'dqk') == 16


def test_synthetic_weight_scales_the_augmented_rows_in_the_loss(experiment):
    """``rsir.synthetic_weight`` w: the loss is the w-weighted mean over target positions; w = 0 is
    the loss of the real rows alone, w = 1 the unweighted loss, any w the hand-weighted mean of both."""
    ex = experiment
    tr, _, _ = ex.splits([s[::-1] for s in ex.real_train[:60]])
    model = ex.new_model(tr).train()           # training mode (every position), dropout off: one forward
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    batch = next(iter(tr.train_loader(batch_size=10_000, shuffle=False, num_workers=0)))
    syn = batch[tr.fuid] >= tr.syn_uid_start
    assert 0 < int(syn.sum()) < len(syn)
    neg = torch.randint(1, tr.num_items, (len(syn), 16), generator=torch.Generator().manual_seed(0))

    def loss(rows, weight=None):
        part = {k: v[rows] if torch.is_tensor(v) else v for k, v in batch.items()}
        return training.user_regime_loss(model, part, tr.fiid, tr.num_items, neg=neg[rows],
                                         weight=None if weight is None else weight[rows])
    every = torch.ones(len(syn), dtype=torch.bool)
    with torch.no_grad():
        real, synth, plain = loss(~syn), loss(syn), loss(every)
        assert float(loss(every, torch.where(syn, 0.0, 1.0))) == pytest.approx(float(real), rel=1e-5)
        assert float(loss(every, torch.ones(len(syn)))) == pytest.approx(float(plain), rel=1e-6)
        n_real, n_syn = (float((batch[tr.fiid][r] > 0).sum()) for r in (~syn, syn))
        want = (float(real) * n_real + 2.5 * float(synth) * n_syn) / (n_real + 2.5 * n_syn)
        assert float(loss(every, torch.where(syn, 2.5, 1.0))) == pytest.approx(want, rel=1e-5)


def _fit_losses(ex, tmp_path, name, **train):
    """Per-epoch losses of 2 epochs on the real rows from one initialisation, dropout off."""
    tr, va, _ = ex.splits([])
    torch.manual_seed(0)
    model = ex.new_model(tr)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0
    cfg = dict(ex.cfg['train'], epochs=2, patience=2, **train)
    summary = training.fit(model, tr, va, cfg, str(tmp_path / name), ex.device)
    return [h['loss'] for h in summary['history']]


def test_bf16_autocast_trains_close_to_fp32_but_not_equal(experiment, tmp_path):
    """``train.precision: bf16`` runs the step under autocast (the losses move by rounding only)."""
    fp32 = _fit_losses(experiment, tmp_path, 'fp32')
    bf16 = _fit_losses(experiment, tmp_path, 'bf16', precision='bf16')
    assert fp32 != bf16
    assert bf16 == pytest.approx(fp32, rel=1e-2)


def test_compiled_step_gives_the_eager_losses(experiment, tmp_path, monkeypatch):
    """``train.compile: true`` wraps the step in torch.compile; traced by dynamo (the eager backend keeps
    the test fast: inductor's C++ build takes minutes on CPU), it gives the losses of the plain step."""
    seen = []
    real = torch.compile

    def eager_compile(module):
        seen.append(type(module).__name__)
        return real(module, backend='eager')
    monkeypatch.setattr(torch, 'compile', eager_compile)
    eager = _fit_losses(experiment, tmp_path, 'eager')
    compiled = _fit_losses(experiment, tmp_path, 'compiled', compile=True)
    assert seen == ['TrainStep']
    assert compiled == pytest.approx(eager, rel=1e-6)


def test_eval_max_users_validates_on_the_first_users_only(experiment, tmp_path):
    """``eval_max_users`` (benchmarks/scaling.py): fit's validation is ``evaluate(..., max_users=N)``, so a
    capped run records the capped metrics, not those of every user."""
    tr, va, _ = experiment.splits([])
    torch.manual_seed(0)
    model = experiment.new_model(tr)
    cfg = dict(experiment.cfg['train'], epochs=1, patience=1, eval_max_users=8, eval_batch_size=8)
    summary = training.fit(model, tr, va, cfg, str(tmp_path / 'capped'), experiment.device)
    rec = summary['history'][0]
    first = training.evaluate(model, va, experiment.num_items, 8, experiment.device, max_users=8)
    every = training.evaluate(model, va, experiment.num_items, 8, experiment.device)
    assert first['users'] == 8 < every['users']
    assert rec['val_ndcg@20'] == pytest.approx(first['ndcg@20'], abs=1e-9)
    assert rec['val_recall@20'] == pytest.approx(first['recall@20'], abs=1e-9)
    assert (first['ndcg@20'], first['recall@20']) != (every['ndcg@20'], every['recall@20'])


def test_scaling_benchmark_times_part_of_an_epoch_and_scales_it_by_batches(tmp_path, monkeypatch):
    """benchmarks/scaling.py --epoch_batches N trains on the first N batches of the epoch only (the
    million-user epoch is an hour on one core) and the table scales its seconds by batches / N; every
    stage still runs and is recorded."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        'scaling', os.path.join(os.path.dirname(__file__), '..', 'benchmarks', 'scaling.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    seen = []
    real_fit = training.fit

    def counting_fit(model, train, *a, **k):
        loader = train.train_loader
        train.train_loader = lambda **kw: (seen.append(1) or b for b in loader(**kw))
        return real_fit(model, train, *a, **k)
    monkeypatch.setattr(training, 'fit', counting_fit)
    rec = bench.one_size(600, str(tmp_path), 1, gen_sources=20, eval_users=50, epoch_batches=2)
    ep = rec['stages']['epoch']
    assert list(rec['stages']) == list(bench.STAGES)
    assert ep['timed_batches'] == 2 == len(seen)
    assert ep['batches'] == math.ceil(2 * rec['stages']['load']['users'] / 256)
    assert ep['batches'] > 2
    full, part = bench.full_seconds(rec, 'epoch')
    assert part and full == pytest.approx(ep['train_seconds'] * ep['batches'] / 2)
    assert rec['stages']['generate']['sources'] == 20
    assert 50 <= rec['stages']['evaluate']['eval_users'] < 600     # whole evaluation batches of the first users
    assert 'from a part' in bench.table(str(tmp_path)).split('| epoch |')[1].split('\n')[0]


class _Killed(Exception):
    pass


@pytest.mark.parametrize('regime', ['user', 'prefix'])
def test_a_kill_inside_an_epoch_resumes_from_the_batch_it_saved(small_file, tmp_path, regime):
    """``train.save_every_s``: resume states saved inside an epoch (here after every batch) hold the
    batch, the epoch's start RNG states and its running loss; a run killed in the middle of epoch 1
    replays the loader to that batch and ends with the losses, validation and weights of an uninterrupted
    run (dropout on: the RNG states after the batch are restored too)."""
    from recstudio_rsir.algorithm import loop
    cfg = tiny_cfg(small_file, tmp_path / 'out', batch_size=32, regime=regime)
    torch.set_num_threads(1)
    ex = loop.Experiment(cfg, str(tmp_path / 'out'))
    tr, va, _ = ex.splits([])
    train_cfg = dict(ex.cfg['train'], epochs=2, patience=2)

    def run(folder, init_seed, save_every_s, kill_at=None):
        torch.manual_seed(init_seed)
        model = ex.new_model(tr)
        loader, calls = tr.train_loader, []

        def killing_loader(**kw):
            calls.append(1)
            for i, b in enumerate(loader(**kw)):
                if kill_at and len(calls) == 2 and i == kill_at:
                    raise _Killed
                yield b
        tr.train_loader = killing_loader
        try:
            s = training.fit(model, tr, va, dict(train_cfg, save_every_s=save_every_s), str(folder), ex.device)
        finally:
            tr.train_loader = loader
        return s, model

    torch.manual_seed(1)
    ref, ref_model = run(tmp_path / 'ref', 0, 0)
    torch.manual_seed(1)
    with pytest.raises(_Killed):
        run(tmp_path / 'killed', 0, 1e-9, kill_at=5)
    st = training.load_checkpoint(str(tmp_path / 'killed' / 'train_state.pt'))
    assert st['epoch'] == 0 and st['in_epoch']['epoch'] == 1 and st['in_epoch']['batches'] == 5
    assert len(st['history']) == 1
    torch.manual_seed(99)                   # another global RNG and initialisation: all of it comes from the file
    got, got_model = run(tmp_path / 'killed', 5, 0)
    assert [h['loss'] for h in got['history']] == [h['loss'] for h in ref['history']]
    assert [h['val_ndcg@20'] for h in got['history']] == [h['val_ndcg@20'] for h in ref['history']]
    for (name, a), b in zip(ref_model.state_dict().items(), got_model.state_dict().values()):
        assert torch.equal(a, b), name
