"""The batched generator against the reference loop, determinism, chunking and leakage."""
import math
import os

import pytest
import torch

from recstudio_rsir.algorithm import generation as G
from recstudio_rsir import host


def _model(experiment, seed):
    tr, _, _ = host.build(experiment.pristine)
    model = experiment.new_model(tr)   # the host reseeds the global RNG while building a model
    torch.manual_seed(seed)
    with torch.no_grad():  # a random model with a different draw per seed
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return G.ModelScorer(model.double(), tr.num_items, experiment.max_seq_len), tr


@pytest.mark.parametrize('seed,tau,p,prefix,keep', [
    (0, 20, 0.5, 'first', False), (1, 5, 0.3, 'first', False), (2, 50, 0.8, 'random', False),
    (3, 10, 0.0, 'first', True), (4, 3, 1.0, 'random', True), (5, math.inf, 0.5, 'first', False),
])
def test_batched_equals_reference_greedy(experiment, seed, tau, p, prefix, keep):
    scorer, _ = _model(experiment, seed)
    sources = experiment.real_train[:40]
    cfg = G.GenConfig(m=3, p=p, tau=tau, seed=seed, seed_prefix=prefix, keep_failed_step=keep, batch_size=17,
                      max_len=12, memory_mb=0.005)   # tiny budget: the item dimension is chunked
    draws = G.predraw(sources, cfg)
    calls = scorer.forward_calls, scorer.score_calls
    a, sa = G.generate_batched(scorer, sources, cfg, draws)
    assert scorer.score_calls - calls[1] >= 3 * (scorer.forward_calls - calls[0])   # really chunked
    b, sb = G.generate_reference(scorer, sources, cfg, draws)
    assert a == b
    assert (sa.steps_tried, sa.accepted, sa.rejected_fidelity) == (sb.steps_tried, sb.accepted, sb.rejected_fidelity)
    assert sum(len(x) for x in a) > len(a)   # something was generated
    for t, seq in enumerate(a):
        assert len(set(seq)) == len(seq)                  # no repeats
        assert len(seq) <= cfg.max_len + (1 if keep else 0)
        j = int(draws.prefix[t])
        assert seq[:j] == sources[t // cfg.m][:j]          # the seed prefix
    if math.isinf(tau):
        assert sa.rejected_fidelity == 0


@pytest.mark.parametrize('memory_mb', [64, 0.002])
def test_batched_equals_reference_with_repeated_items(experiment, memory_mb):
    """Sources may repeat an item (a re-purchase): the own pool and the target are sets, a repeated
    prefix item counts once in the rank test."""
    scorer, _ = _model(experiment, 9)
    sources = [[i for i in s for _ in (0, 1)] for s in experiment.real_train[:40]]   # every item twice
    cfg = G.GenConfig(m=3, p=0.5, tau=40, seed=9, seed_prefix='random', max_len=30, batch_size=8,
                      memory_mb=memory_mb)
    draws = G.predraw(sources, cfg)
    a, _ = G.generate_batched(scorer, sources, cfg, draws)
    assert a == G.generate_reference(scorer, sources, cfg, draws)[0]
    assert any(len(x) > int(j) for x, j in zip(a, draws.prefix))


def test_batched_equals_reference_sampling(experiment):
    scorer, _ = _model(experiment, 7)
    sources = experiment.real_train[:30]
    cfg = G.GenConfig(m=2, tau=20, seed=7, decoding='sample', top_k=5, temperature=0.7, max_len=10)
    draws = G.predraw(sources, cfg)
    assert G.generate_batched(scorer, sources, cfg, draws)[0] == G.generate_reference(scorer, sources, cfg, draws)[0]


def test_pool_choice_is_respected(experiment):
    scorer, _ = _model(experiment, 8)
    sources = experiment.real_train[:30]
    own_only = G.GenConfig(m=2, p=1.0, tau=math.inf, seed=1, max_len=10)
    seqs, _ = G.generate_batched(scorer, sources, own_only)
    for t, s in enumerate(seqs):
        assert set(s) <= set(sources[t // 2])       # p = 1: only the user's own items


def test_same_seed_same_output_and_batch_size_independent(experiment):
    scorer, _ = _model(experiment, 9)
    sources = experiment.real_train[:50]
    cfg = G.GenConfig(m=2, seed=11, max_len=10)
    a = G.generate_batched(scorer, sources, cfg)[0]
    b = G.generate_batched(scorer, sources, G.GenConfig(m=2, seed=11, max_len=10, batch_size=7))[0]
    c = G.generate_batched(scorer, sources, G.GenConfig(m=2, seed=12, max_len=10))[0]
    assert a == b and a != c


def test_config_to_json_writes_fidelity_off_as_a_string():
    import json
    off = G.GenConfig(tau=math.inf).to_json()
    assert off['tau'] == 'inf' and json.loads(json.dumps(off, allow_nan=False)) == off
    on = G.GenConfig(tau=5).to_json()
    assert on == dict(G.GenConfig(tau=5).__dict__) and on['tau'] == 5


def test_filter_min_len_and_duplicates():
    st = G.GenStats()
    traj = [[1, 2], [1, 2, 3], [1, 2, 3], [4, 5, 6], [7, 8, 9, 10]]
    kept, origin = G.filter_sequences(traj, [t // 2 for t in range(5)], [[1, 2, 3, 9], [4, 5, 6], [7, 8]],
                                      [1, 1, 1, 1, 1], existing=[[4, 5, 6]], min_len=3, stats=st)
    assert kept == [[1, 2, 3], [7, 8, 9, 10]] and origin == [0, 2]
    assert (st.dropped_short, st.dropped_duplicate, st.kept) == (1, 2, 2)
    # generated items after the prefix: [2,3] from source 0 (both own), [8,9,10] from source 2 (8 own)
    assert (st.generated_items, st.generated_from_own) == (5, 3)


def test_generator_never_sees_validation_or_test_items(small_file, tmp_path):
    """Changing every user's last two items (validation, test) changes nothing that is generated."""
    from conftest import tiny_cfg, write_seq_file, small_sequences
    from recstudio_rsir.algorithm import loop
    seqs = small_sequences()
    items = sorted({i for s in seqs.values() for i, _ in s}, key=int)
    changed = {}
    for k, (u, s) in enumerate(seqs.items()):
        s = list(s)
        s[-1] = (items[(k * 7) % len(items)], s[-1][1])
        s[-2] = (items[(k * 13 + 1) % len(items)], s[-2][1])
        changed[u] = s
    f2 = write_seq_file(tmp_path / 'changed.txt', changed)
    ex1 = loop.Experiment(tiny_cfg(small_file, tmp_path / 'a'), str(tmp_path / 'a'))
    ex2 = loop.Experiment(tiny_cfg(f2, tmp_path / 'b'), str(tmp_path / 'b'))
    # same item id space in both (every item still occurs in training rows), same training rows
    tok1 = list(ex1.pristine.field2tokens[ex1.pristine.fiid])
    tok2 = list(ex2.pristine.field2tokens[ex2.pristine.fiid])
    m1 = [[tok1[i] for i in s] for s in ex1.real_train]
    m2 = [[tok2[i] for i in s] for s in ex2.real_train]
    assert m1 == m2
    tr, _, _ = host.build(ex1.pristine)
    torch.manual_seed(0)
    model = ex1.new_model(tr)
    cfg = G.GenConfig(m=2, seed=3, max_len=12)
    s1 = G.ModelScorer(model, ex1.num_items, 50)
    out1 = G.generate_batched(s1, ex1.real_train, cfg)[0]
    # the same model weights, re-indexed to the second dataset's item ids
    perm = torch.tensor([tok1.index(t) if t in tok1 else 0 for t in tok2])
    tr2, _, _ = host.build(ex2.pristine)
    model2 = ex2.new_model(tr2)
    sd = model.state_dict()
    sd = {k: (v[perm] if v.shape[:1] == (len(tok1),) and 'item' in k else v) for k, v in sd.items()}
    model2.load_state_dict(sd)
    out2 = G.generate_batched(G.ModelScorer(model2, ex2.num_items, 50), ex2.real_train, cfg)[0]
    assert [[tok1[i] for i in s] for s in out1] == [[tok2[i] for i in s] for s in out2]


def test_target_items_history_and_dedup_generated(small_file, tmp_path):
    """rsir.target_items: history generates from each row without its last item (with p = 1 and no
    fidelity every generated item is one of them); rsir.dedup: generated keeps rows that equal a
    training row, and drops nothing else."""
    import json
    from conftest import tiny_cfg
    from recstudio_rsir.algorithm import loop
    from recstudio_rsir.records import RunLayout
    runs = {}
    for name, over in {'hist': {'rsir.target_items': 'history', 'rsir.p': 1.0, 'rsir.fidelity': 'off'},
                       'all': {'rsir.p': 1.0, 'rsir.fidelity': 'off', 'rsir.m': 1},
                       'gen': {'rsir.p': 1.0, 'rsir.fidelity': 'off', 'rsir.m': 1, 'rsir.dedup': 'generated'}}.items():
        cfg = tiny_cfg(small_file, tmp_path / name, **{'rsir.rounds': 1, 'epochs': 1}, **over)
        cfg['augment'] = 'rsir'
        loop.run(cfg, progress=False)
        lay = RunLayout(str(tmp_path / name))
        runs[name] = loop.load_sequences(lay.synthetic(1)), json.load(open(lay.generation(1)))
    ex = loop.Experiment(tiny_cfg(small_file, tmp_path / 'x'), str(tmp_path / 'x'))
    train = ex.real_train
    (rows, origin), _ = runs['hist']
    assert rows
    assert all(set(row) <= set(train[o][:-1]) for row, o in zip(rows, origin))
    (rows_all, _), g_all = runs['all']
    (rows_gen, _), g_gen = runs['gen']
    train_set = {tuple(r) for r in train}
    assert {tuple(r) for r in rows_gen} - train_set == {tuple(r) for r in rows_all}
    assert len(rows_gen) - len(rows_all) == len({tuple(r) for r in rows_gen} & train_set) > 0
    assert g_gen['dropped_duplicate'] < g_all['dropped_duplicate']


@pytest.mark.parametrize('model_name', ['SASRec', 'CL4SRec', 'HSTU'])
def test_kv_cache_equals_full_encoding(small_file, tmp_path, model_name):
    """Incremental encoding (issue #15 item 2) gives the encoder's own output at the last position:
    for growing contexts, for a context changed or shortened under a row (re-encoded from the first
    difference), and it encodes only the new positions; rows it cannot serve fall back."""
    from recstudio_rsir import config as C
    from recstudio_rsir.algorithm import kvcache, loop
    torch.manual_seed(0)
    depth = {'model.num_blocks': 2} if model_name == 'HSTU' else {'model.layer_num': 2}
    cfg = C.resolve(flags={'model.embed_dim': 16, **depth, 'num_threads': 1},
                    top={'model_name': model_name, 'dataset': small_file, 'output': str(tmp_path / 'o')})
    ex = loop.Experiment(cfg, str(tmp_path / 'o'))
    model = ex.new_model(ex.splits([])[0]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert kvcache.supports(model.query_encoder)
    cached = G.ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid)
    full = G.ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid, incremental=False)
    assert cached.cache is not None and full.cache is None
    B, L = 6, 9
    g = torch.Generator().manual_seed(1)
    ctx = torch.randint(1, ex.num_items, (B, L + 1), generator=g)
    rows = torch.arange(B)
    cached.begin_batch(B, L + 1)
    lens = torch.tensor([1, 2, 3, 1, 4, 2])
    for step in range(5):
        c = ctx * (torch.arange(L + 1) < lens.unsqueeze(1))
        before = cached.cache.positions_encoded
        a, b = cached.query(c, lens, rows=rows), full.query(c, lens)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (step, (a - b).abs().max())
        if step > 0:
            assert cached.cache.positions_encoded - before == B      # one new position per row
        lens = lens + 1
    # a changed item in the middle of rows 0 and 2, row 4 shortened, only rows 1..4 asked
    ctx[0, 1] = ctx[0, 1] % (ex.num_items - 1) + 1
    ctx[2, 0] = ctx[2, 0] % (ex.num_items - 1) + 1
    lens[4] = 3
    sub = torch.tensor([0, 2, 4])
    c = (ctx * (torch.arange(L + 1) < lens.unsqueeze(1)))[sub]
    assert torch.allclose(cached.query(c, lens[sub], rows=sub), full.query(c, lens[sub]), atol=1e-5, rtol=1e-4)
    # longer than the position table: served by the full encoding
    long = torch.randint(1, ex.num_items, (2, ex.max_seq_len + 3), generator=g)
    n = torch.tensor([ex.max_seq_len + 3, 5])
    assert torch.allclose(cached.query(long, n, rows=torch.tensor([0, 1])), full.query(long, n), atol=1e-5, rtol=1e-4)
    # and whole generation: the same trajectories with and without the cache
    gcfg = G.GenConfig(m=2, p=0.5, tau=10, seed=5, seed_prefix='random', batch_size=17, max_len=12)
    sources = ex.real_train[:40]
    draws = G.predraw(sources, gcfg)
    assert G.generate_batched(cached, sources, gcfg, draws)[0] == G.generate_batched(full, sources, gcfg, draws)[0]


def test_generation_with_and_without_cache_is_identical(experiment):
    scorer, _ = _model(experiment, 7)
    plain = G.ModelScorer(scorer.model, scorer.num_items, scorer.max_seq_len, incremental=False)
    sources = experiment.real_train[:60]
    cfg = G.GenConfig(m=3, p=0.5, tau=10, seed=3, seed_prefix='random', batch_size=23, max_len=15)
    draws = G.predraw(sources, cfg)
    assert G.generate_batched(scorer, sources, cfg, draws)[0] == G.generate_batched(plain, sources, cfg, draws)[0]
    assert scorer.cache is not None and scorer.cache.positions_encoded > 0


def test_a_scorer_without_rows_generates_the_same(experiment):
    """A scorer offering only ``query(ctx, lens)`` and ``scores`` (no ``begin_batch``, no row ids: a
    custom scorer) generates what the model's own scorer does, with gradients off."""
    scorer, _ = _model(experiment, 8)

    class Plain:
        def __init__(self, inner):
            self.inner, self.num_items, self.device, self.forward_seconds = inner, inner.num_items, inner.device, 0.0
            self.calls, self.grad = 0, set()

        def query(self, ctx, lens):
            self.calls += 1
            self.grad.add(torch.is_grad_enabled())
            return self.inner._full_query(ctx, lens)

        def scores(self, q, lo, hi):
            return self.inner.scores(q, lo, hi)
    plain = Plain(scorer)
    sources = experiment.real_train[:50]
    cfg = G.GenConfig(m=2, p=0.5, tau=10, seed=4, seed_prefix='random', batch_size=19, max_len=12)
    draws = G.predraw(sources, cfg)
    assert G.generate_batched(plain, sources, cfg, draws)[0] == G.generate_batched(scorer, sources, cfg, draws)[0]
    assert plain.calls > 0 and plain.grad == {False}          # generation never records gradients


@pytest.mark.parametrize('decoding,seed', [('greedy', 0), ('greedy', 1), ('sample', 2)])
def test_popularity_penalty_batched_equals_reference_and_lowers_popularity(experiment, decoding, seed):
    """rsir.popularity_penalty (beyond the paper): picks rank by score - lambda x log(1 + count), the
    fidelity test by the raw score; the batched generator equals the reference loop under it (with a
    chunked item dimension), and a strong penalty picks less popular items than none."""
    scorer, tr = _model(experiment, seed)
    sources = experiment.real_train[:40]
    counts = torch.zeros(scorer.num_items, dtype=torch.float64)
    for s in experiment.real_train:
        for i in s:
            counts[i] += 1
    cfg = G.GenConfig(m=3, p=0.3, tau=20, seed=seed, decoding=decoding, top_k=5, batch_size=19, max_len=12,
                      memory_mb=0.005)
    draws = G.predraw(sources, cfg)
    pen = 2.0 * torch.log1p(counts)
    a, sa = G.generate_batched(scorer, sources, cfg, draws, penalty=pen)
    b, sb = G.generate_reference(scorer, sources, cfg, draws, penalty=pen)
    assert a == b and (sa.accepted, sa.rejected_fidelity) == (sb.accepted, sb.rejected_fidelity)
    plain, _ = G.generate_batched(scorer, sources, cfg, draws)
    assert plain != a

    def mean_count(rows):
        gen = [i for t, r in enumerate(rows) for i in r[int(draws.prefix[t]):]]
        return float(counts[gen].mean())
    assert mean_count(a) < mean_count(plain)


# ----------------------------------------------------------------------------- saved progress (resume)

class _Stop(Exception):
    pass


def _stop_after(n):
    """A progress callback that interrupts generation after ``n`` batches."""
    calls = []

    def progress(_):
        calls.append(1)
        if len(calls) == n:
            raise _Stop
    return progress


def test_interrupted_generation_resumes_to_the_uninterrupted_output(experiment, tmp_path, monkeypatch):
    """Saved progress holds whole batches; a second call generates only the batches it lacks and returns
    the uninterrupted trajectories and step counters; a third call finds nothing left to generate."""
    from recstudio_rsir.algorithm.gen_checkpoint import GenerationCheckpoint, fingerprint
    scorer, _ = _model(experiment, 5)
    sources = experiment.real_train[:60]
    cfg = G.GenConfig(m=3, p=0.5, tau=10, seed=2, seed_prefix='random', batch_size=17, max_len=12)
    want, st = G.generate_batched(scorer, sources, cfg)
    batches = math.ceil(len(want) / cfg.batch_size)
    fp = fingerprint(cfg, sources, scorer.model)
    folder = str(tmp_path / 'progress')
    with pytest.raises(_Stop):
        G.generate_batched(scorer, sources, cfg, progress=_stop_after(4),
                           checkpoint=GenerationCheckpoint(folder, fp, every_seconds=0))
    assert sorted(os.listdir(folder)) == ['part_00000.npz', 'part_00001.npz', 'part_00002.npz', 'part_00003.npz',
                                          'progress.json']
    done = []
    real = G._generate_batch
    monkeypatch.setattr(G, '_generate_batch', lambda *a, **k: done.append(1) or real(*a, **k))
    got, st2 = G.generate_batched(scorer, sources, cfg, checkpoint=GenerationCheckpoint(folder, fp, every_seconds=0))
    assert got == want and len(done) == batches - 4
    assert st2.resumed_trajectories == 4 * cfg.batch_size and st.resumed_trajectories == 0
    assert [getattr(st2, c) for c in G.STEP_COUNTERS] == [getattr(st, c) for c in G.STEP_COUNTERS]
    assert st2.steps_tried > 0 and 'from saved progress' in st2.summary_line()
    done.clear()
    again, st3 = G.generate_batched(scorer, sources, cfg, checkpoint=GenerationCheckpoint(folder, fp))
    assert again == want and done == [] and st3.resumed_trajectories == len(want)


def test_progress_of_another_generator_or_damaged_is_discarded(experiment, tmp_path, caplog):
    import logging
    import re
    from recstudio_rsir.algorithm.gen_checkpoint import GenerationCheckpoint, fingerprint
    scorer, _ = _model(experiment, 6)
    other, _ = _model(experiment, 7)
    sources = experiment.real_train[:40]
    cfg = G.GenConfig(m=2, tau=10, seed=1, batch_size=9, max_len=10)
    fp = fingerprint(cfg, sources, scorer.model)
    # what decides the trajectories changes the fingerprint; the chunking budget does not
    assert fp == fingerprint(G.GenConfig(m=2, tau=10, seed=1, batch_size=9, max_len=10, memory_mb=1), sources,
                             scorer.model)
    assert len({fp, fingerprint(cfg, sources, other.model), fingerprint(cfg, sources[:-1], scorer.model),
                fingerprint(G.GenConfig(m=2, tau=10, seed=2, batch_size=9, max_len=10), sources, scorer.model),
                fingerprint(cfg, sources, scorer.model, penalty=torch.zeros(scorer.num_items)),
                fingerprint(G.GenConfig(m=2, tau=math.inf, seed=1, batch_size=9, max_len=10), sources,
                            scorer.model)}) == 6
    folder = str(tmp_path / 'progress')
    with pytest.raises(_Stop):
        G.generate_batched(scorer, sources, cfg, progress=_stop_after(3),
                           checkpoint=GenerationCheckpoint(folder, fp, every_seconds=0))
    # another model's generator does not use this progress: it starts over (and empties the folder)
    ofp = fingerprint(cfg, sources, other.model)
    got, st = G.generate_batched(other, sources, cfg, checkpoint=GenerationCheckpoint(folder, ofp, every_seconds=1e9))
    assert got == G.generate_batched(other, sources, cfg)[0] and st.resumed_trajectories == 0
    assert not os.path.exists(folder)
    # damaged progress is never used: a one-line warning naming the file, then generation starts over
    # (nothing depends on the progress yet, so the rows are the same)
    want = G.generate_batched(scorer, sources, cfg)[0]

    def damage_part(path):
        with open(path, 'r+b') as f:
            f.seek(40)
            f.write(b'\xff\xff')

    def damage_manifest(path):
        with open(os.path.join(folder, 'progress.json'), 'w') as f:
            f.write('{"fingerprint": "%s", "parts": [{"file": "part_00000.npz"}]}' % fp)

    def garbage_manifest(path):
        with open(os.path.join(folder, 'progress.json'), 'wb') as f:
            f.write(b'\x80not json')
    for damage, said in ((damage_part, r'part_00001\.npz: changed since it was written'),
                         (damage_manifest, r'progress\.json: damaged \(KeyError'),
                         (garbage_manifest, r'progress\.json: damaged')):
        with pytest.raises(_Stop):
            G.generate_batched(scorer, sources, cfg, progress=_stop_after(3),
                               checkpoint=GenerationCheckpoint(folder, fp, every_seconds=0))
        damage(os.path.join(folder, 'part_00001.npz'))
        with caplog.at_level(logging.WARNING, logger='recstudio_rsir'):
            caplog.clear()
            got, st = G.generate_batched(scorer, sources, cfg, checkpoint=GenerationCheckpoint(folder, fp))
        assert got == want and st.resumed_trajectories == 0 and not os.path.exists(folder)
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(lines) == 1 and '\n' not in lines[0] and re.search(said, lines[0]), lines
        assert 'generating this round from its start' in lines[0]


def test_a_run_interrupted_in_generation_resumes_to_the_same_rows(small_file, tmp_path, monkeypatch):
    """Through the loop: a run killed in round 1's generation (progress saved after every batch here)
    resumes from round_1/generation_progress, writes the rows of an uninterrupted run, records how
    many trajectories it restored, and removes the progress folder."""
    import json
    import shutil
    from conftest import tiny_cfg
    from recstudio_rsir.algorithm import gen_checkpoint, loop
    from recstudio_rsir.records import RunLayout

    def run(name):
        cfg = tiny_cfg(small_file, tmp_path / name, **{'rsir.rounds': 1, 'epochs': 1, 'rsir.batch_size': 64})
        cfg['augment'] = 'rsir'
        return loop.run(cfg, progress=False)
    run('a')
    a, b = RunLayout(str(tmp_path / 'a')), RunLayout(str(tmp_path / 'b'))
    shutil.copytree(a.root, b.root)
    shutil.rmtree(b.path('round_1'))                           # b: round 0 done, round 1 not started
    monkeypatch.setattr(gen_checkpoint, 'SAVE_EVERY_SECONDS', 0.0)
    real, calls = G._generate_batch, []

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise _Stop
        return real(*args, **kw)
    monkeypatch.setattr(G, '_generate_batch', interrupted)
    with pytest.raises(_Stop):
        run('b')
    assert not os.path.exists(b.synthetic(1)) and not os.path.exists(b.generation(1))
    assert len(json.load(open(os.path.join(b.generation_progress(1), 'progress.json')))['parts']) == 4
    monkeypatch.setattr(G, '_generate_batch', real)
    res = run('b')
    assert loop.load_sequences(b.synthetic(1)) == loop.load_sequences(a.synthetic(1))
    gen_a, gen_b = json.load(open(a.generation(1))), json.load(open(b.generation(1)))
    assert gen_b['resumed_trajectories'] == 4 * 64 and gen_a['resumed_trajectories'] == 0
    assert {k: gen_b[k] for k in G.STEP_COUNTERS + ('kept',)} == {k: gen_a[k] for k in G.STEP_COUNTERS + ('kept',)}
    assert not os.path.exists(b.generation_progress(1)) and res.rounds[1].generation is not None
