#!/usr/bin/env python
"""Batched generator vs the reference loop on a trained SASRec, Beauty scale.

    python benchmarks/bench_generation.py --run runs/regime_cost/user        # reuse a trained model
    python benchmarks/bench_generation.py                                     # train one first (user regime)
    python benchmarks/bench_generation.py --model HSTU --encoder_only         # the cache's encoder figure only

What it measures (same model, same sources, same pre-drawn pool choices, m=5, tau=20, greedy):
  * the batched generator on ALL training sequences: total time, share spent in the model's forward
    passes (query encoding + item scoring), and the ratio to the time of training that model;
  * the batched generator and the reference loop on the first --ref_sources sources (the reference is
    a Python loop: minutes per thousand sources on CPU): identical outputs, and the speed ratio;
  * the batched generator with the key/value cache (rsir.kv_cache, the default) against full
    re-encoding at every step (before issue #15): time, forward share, identical outputs.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recstudio_rsir import config as C  # noqa: E402
from recstudio_rsir.algorithm import generation as G  # noqa: E402
from recstudio_rsir import host  # noqa: E402
from recstudio_rsir.algorithm import loop, training  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default=os.path.join('..', 'shared', 'data', 'seqrec', 'Beauty.txt.gz'))
    ap.add_argument('--run', help='an output folder of run_recstudio.py (augment none) to load the model from')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--ref_sources', type=int, default=300)
    ap.add_argument('--batch_size', type=int, default=1024)
    ap.add_argument('--json', help='write the figures here')
    ap.add_argument('--threads', type=int, default=os.cpu_count())
    ap.add_argument('--model', default='SASRec', help='backbone (SASRec, CL4SRec, HSTU, ...)')
    ap.add_argument('--encoder_only', action='store_true',
                    help='only the encoder on contexts grown to max_seq_len, cached vs full (an untrained model: '
                         'the time does not depend on the weights)')
    a = ap.parse_args()
    host.apply_shims()
    torch.set_num_threads(a.threads)
    out = a.run or os.path.join('runs', f'bench_generation_{a.model}')
    cfg = C.resolve(flags={'train.device': a.device, 'epochs': 200, 'patience': 5},
                    top={'model_name': a.model, 'dataset': a.data, 'output': out})
    if a.encoder_only:
        return encoder_only(a, cfg, out)
    if not os.path.exists(os.path.join(out, 'round_0', 'metrics.json')):
        loop.run(cfg, progress=False)
    metrics = json.load(open(os.path.join(out, 'round_0', 'metrics.json')))
    ex = loop.Experiment(cfg, out)
    tr, _, _ = ex.splits([])
    model = ex.new_model(tr)
    ckpt = loop.checkpoint_path(os.path.join(out, 'round_0'), metrics)
    model.load_state_dict(training.load_checkpoint(ckpt, ex.device)['model'])
    scorer = G.ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid)
    gcfg = G.GenConfig(m=5, p=0.5, tau=20, max_len=ex.max_seq_len, batch_size=a.batch_size, seed=0)
    sources = ex.real_train
    draws = G.predraw(sources, gcfg)

    plain = G.ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid, incremental=False)
    nocache, sn = G.generate_batched(plain, sources, gcfg, draws)
    full, st = G.generate_batched(scorer, sources, gcfg, draws)
    train_s = metrics['train']['train_seconds']
    fig = {'device': str(ex.device), 'sources': len(sources), 'trajectories': st.trajectories,
           'batched_seconds_all': st.seconds, 'forward_share_all': st.forward_seconds / st.seconds,
           'outside_forward_share_all': 1 - st.forward_seconds / st.seconds,
           'training_seconds': train_s, 'generation_over_training': st.seconds / train_s,
           'steps_tried': st.steps_tried, 'accepted': st.accepted, 'kv_cache': scorer.cache is not None,
           'query_seconds_all': scorer.query_seconds, 'no_cache_query_seconds_all': plain.query_seconds,
           'no_cache_seconds_all': sn.seconds, 'no_cache_forward_share_all': sn.forward_seconds / sn.seconds,
           'cache_speedup_all': sn.seconds / st.seconds, 'cache_identical': nocache == full}

    fig.update(grow_to_max_len(scorer, plain, a.batch_size, ex))

    sub = sources[:a.ref_sources]
    sub_draws = G.Draws(draws.own[:len(sub) * gcfg.m], draws.prefix[:len(sub) * gcfg.m],
                        draws.uniform[:len(sub) * gcfg.m])
    b, sb = G.generate_batched(scorer, sub, gcfg, sub_draws)
    r, sr = G.generate_reference(scorer, sub, gcfg, sub_draws)
    fig.update({'ref_sources': len(sub), 'batched_seconds_subset': sb.seconds, 'reference_seconds_subset': sr.seconds,
                'speedup': sr.seconds / sb.seconds, 'identical': b == r and b == full[:len(b)],
                'reference_forward_share': sr.forward_seconds / sr.seconds})
    for k, v in fig.items():
        print(f'{k:>28}: {v:.4f}' if isinstance(v, float) else f'{k:>28}: {v}')
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(fig, f, indent=2)
    return 0 if fig['identical'] and fig['cache_identical'] else 1


def grow_to_max_len(scorer, plain, B, ex):
    """The encoder alone on B contexts growing one item per step to max_seq_len (long sequences):
    the cached scorer against full re-encoding; also whether their outputs agree."""
    import time
    L = ex.max_seq_len
    g = torch.Generator().manual_seed(0)
    ctx = torch.randint(1, ex.num_items, (B, L), generator=g).to(ex.device)
    rows = torch.arange(B, device=ex.device)
    scorer.begin_batch(B, L)
    times, outs = {}, {}
    for name, f in (('full', lambda c, n: plain.query(c, n)), ('cached', lambda c, n: scorer.query(c, n, rows=rows))):
        t0 = time.perf_counter()
        for n in range(1, L + 1):
            outs[name] = f(ctx[:, :n], torch.full((B,), n, device=ex.device))
        times[name] = time.perf_counter() - t0
    return {'grow_to_max_len_rows': B, 'grow_to_max_len_full_seconds': times['full'],
            'grow_to_max_len_cached_seconds': times['cached'],
            'grow_to_max_len_speedup': times['full'] / times['cached'],
            'grow_to_max_len_max_abs_diff': float((outs['full'] - outs['cached']).abs().max())}


def encoder_only(a, cfg, out):
    torch.manual_seed(0)
    ex = loop.Experiment(cfg, out)
    model = ex.new_model(ex.splits([])[0]).eval()
    scorer = G.ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid)
    plain = G.ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid, incremental=False)
    if scorer.cache is None:
        raise SystemExit(f'{a.model}: no key/value cache for its encoder')
    fig = {'model': a.model, 'device': str(ex.device), 'threads': torch.get_num_threads(),
           **grow_to_max_len(scorer, plain, a.batch_size, ex)}
    for k, v in fig.items():
        print(f'{k:>28}: {v:.4f}' if isinstance(v, float) else f'{k:>28}: {v}')
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(fig, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
