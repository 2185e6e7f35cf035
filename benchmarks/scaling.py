#!/usr/bin/env python
"""How the cost of each stage grows with the data (issue #15 item 4).

    python benchmarks/scaling.py --users 10000 --out runs/scaling            # one size (one process)
    python benchmarks/scaling.py --users 10000,100000 --out runs/scaling     # each size in its own process
    python benchmarks/scaling.py --table runs/scaling                         # table + growth exponents

An Amazon-like synthetic file per size (:func:`amazon_like`, vectorised: items = 0.54 x users as in
Beauty, lengths 5 + a power-law tail with Beauty's quantiles, lognormal item popularity) and SASRec with
the default settings (user regime, batch 256).  Stages, timed in order in one process per size:

  make      write the sequence file
  load      convert it and load it through RecStudio (loop.Experiment: read, .inter, dataset, trial model)
  splits    build train/val/test with one synthetic row per user (the reversed real row)
  epoch     one training epoch on those rows (real + synthetic), or its first --epoch_batches batches (then
            the epoch's time is scaled by batches); its validation runs on the first --eval_users users (a
            full-ranking pass over every user is the quadratic evaluate stage)
  evaluate  full-ranking test evaluation of all users (or the first --eval_users; then per-user time scales)
  generate  RSIR generation (m 5, p 0.5, tau 20, greedy, key/value cache) from the 1-epoch model, on all
            training rows or on the first --gen_sources of them (then per-source time is what scales)

After each stage: its seconds, the process's peak resident memory so far (ru_maxrss) and its resident
memory now.  ``--table`` fits the growth exponent b of seconds ~ interactions^b between consecutive sizes.
"""
import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STAGES = ('make', 'load', 'splits', 'epoch', 'evaluate', 'generate')


def amazon_like(n_users, seed=0, items_per_user=0.54, sigma=1.2, length_a=3.5, length_b=2.6, max_len=400):
    """(item ids flat ``[I]`` int64 from 1, offsets ``[n_users + 1]``): a vectorised Amazon-like
    dataset.  Lengths 5 + X with P(X = k) ~ (k + a)^-b (Beauty's quantiles 5/5/6/9/14 at a 3.5, b 2.6),
    items drawn by lognormal popularity, no item twice in a row's draw order (repeats dropped)."""
    rng = np.random.default_rng(seed)
    n_items = max(10, int(items_per_user * n_users))
    ks = np.arange(max_len - 5 + 1)
    lcdf = np.cumsum((ks + length_a) ** -length_b)
    lens = 5 + np.searchsorted(lcdf / lcdf[-1], rng.random(n_users))
    gcdf = np.cumsum(np.exp(rng.normal(0.0, sigma, n_items)))
    items = 1 + np.minimum(np.searchsorted(gcdf / gcdf[-1], rng.random(int(lens.sum()))), n_items - 1)
    user = np.repeat(np.arange(n_users), lens)
    key = user.astype(np.int64) * (n_items + 1) + items          # drop a user's repeated items, keep order
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(items), dtype=bool)
    keep[first] = True
    items, user = items[keep], user[keep]
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.add.at(offsets, user + 1, 1)
    return items.astype(np.int64), np.cumsum(offsets)


def write_file(path, items, offsets):
    with open(path, 'w') as f:
        for u in range(len(offsets) - 1):
            f.write(f'{u + 1} ' + ' '.join(map(str, items[offsets[u]:offsets[u + 1]].tolist())) + '\n')


def _rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def one_size(n_users, out, threads, gen_sources, eval_users=0, stop_after=None, seed=0, epoch_batches=0):
    import torch
    torch.set_num_threads(threads)
    from recstudio_rsir import config as C, host
    from recstudio_rsir.algorithm import generation as G, loop, training
    host.apply_shims()
    os.makedirs(out, exist_ok=True)
    rec = {'users': n_users, 'threads': threads, 'stages': {}}

    def stage(name, t0, **extra):
        rec['stages'][name] = {'seconds': time.time() - t0, 'peak_mb': resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, 'rss_mb': _rss_mb(), **extra}
        got = rec['stages'][name]
        print(f'{n_users:>9} {name:<9} {got["seconds"]:9.1f}s  peak {got["peak_mb"]:8.0f} MB'
              f'  {extra or ""}', flush=True)
        with open(os.path.join(out, f'scaling_{n_users}.json'), 'w') as f:
            json.dump(rec, f, indent=2)
        return name == stop_after

    t0 = time.time()
    items, offsets = amazon_like(n_users, seed)
    path = os.path.join(out, f'amazon_like_{n_users}.txt')
    write_file(path, items, offsets)
    rec['interactions'] = int(len(items))
    if stage('make', t0, interactions=int(len(items))):
        return rec

    run = os.path.join(out, f'run_{n_users}')
    cfg = C.resolve(flags={'epochs': 1, 'patience': 1, 'num_threads': threads, 'train.seed': seed},
                    top={'model_name': 'SASRec', 'dataset': path, 'output': run})
    t0 = time.time()
    ex = loop.Experiment(cfg, run)
    rec['items'] = ex.num_items - 1
    if stage('load', t0, users=len(ex.real_train), items=ex.num_items - 1):
        return rec

    t0 = time.time()
    synthetic = [s[::-1] for s in ex.real_train]
    train, val, test = ex.splits(synthetic)
    if stage('splits', t0, train_rows=len(ex.real_train) + len(synthetic)):
        return rec

    t0 = time.time()
    cfg['train']['eval_max_users'] = eval_users or None   # fit validates after its epoch: cap it like evaluate
    model = ex.new_model(train)
    batches = math.ceil(len(train) / cfg['train']['batch_size'])
    if epoch_batches and epoch_batches < batches:    # time the first N batches (the work per batch is alike)
        loader = train.train_loader
        train.train_loader = lambda **kw: itertools.islice(loader(**kw), epoch_batches)
    summary = training.fit(model, train, val, cfg['train'], os.path.join(run, 'model'), ex.device)
    h = summary['history'][0]
    rec['epoch_seconds'] = h['train_seconds']                    # the epoch alone (validation is like test)
    if stage('epoch', t0, train_seconds=h['train_seconds'], with_val_seconds=h['seconds'], batches=batches,
             timed_batches=min(epoch_batches or batches, batches)):
        return rec

    t0 = time.time()
    res = training.evaluate(model, test, ex.num_items, cfg['train']['eval_batch_size'], ex.device,
                            max_users=eval_users or None)
    if stage('evaluate', t0, ndcg10=res['ndcg@10'], eval_users=res['users']):
        return rec

    sources = ex.real_train[:gen_sources] if gen_sources else ex.real_train
    gcfg = G.GenConfig.from_rsir(cfg['rsir'], int(cfg['data']['max_seq_len']), 20)
    scorer = G.ModelScorer(model, ex.num_items, int(cfg['data']['max_seq_len']), ex.pristine.fiid)
    t0 = time.time()
    traj, st = G.generate_batched(scorer, sources, gcfg)
    rec['generate_seconds_per_source'] = (time.time() - t0) / len(sources)
    stage('generate', t0, sources=len(sources), trajectories=st.trajectories, steps=st.steps_tried,
          forward_share=st.forward_seconds / max(st.seconds, 1e-9))
    return rec


def full_seconds(rec, stage):
    """(seconds the stage takes on all of the data, whether that is extrapolated from a part): the
    epoch alone (without its validation), evaluation and generation scaled by users timed / all."""
    st = rec['stages'][stage]
    if stage == 'epoch':
        timed, total = st.get('timed_batches'), st.get('batches')
        if timed and total and timed < total:
            return st['train_seconds'] * total / timed, True
        return st['train_seconds'], False
    part = {'evaluate': st.get('eval_users'), 'generate': st.get('sources')}.get(stage) or rec['users']
    return st['seconds'] * rec['users'] / part, part < rec['users']


def table(folder):
    recs = sorted((json.load(open(os.path.join(folder, f))) for f in os.listdir(folder)
                   if f.startswith('scaling_') and f.endswith('.json')), key=lambda r: r['users'])
    lines = ['| stage | ' + ' | '.join(f"{r['users']:,} users, {r.get('items', 0):,} items, {r['interactions']:,} "
                                       'interactions' for r in recs) +
             ' | exponent b (seconds ~ interactions^b) |', '|' + '---|' * (len(recs) + 2)]
    for s in STAGES:
        cells, secs = [], []
        for r in recs:
            if s not in r['stages']:
                cells.append('not run')
                secs.append(None)
                continue
            v, part = full_seconds(r, s)
            peak_gb = r['stages'][s]['peak_mb'] / 1024
            cells.append(f"{v:,.1f} s{' (from a part)' if part else ''}, peak {peak_gb:.1f} GB")
            secs.append(v)
        exps = [f'{math.log(b / a) / math.log(rb["interactions"] / ra["interactions"]):.2f}'
                for a, b, ra, rb in zip(secs, secs[1:], recs, recs[1:]) if a and b]
        lines.append(f'| {s} | ' + ' | '.join(cells) + ' | ' + ', '.join(exps) + ' |')
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--users', default='10000', help='comma list of sizes; each runs in its own process')
    ap.add_argument('--out', default='runs/scaling')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--gen_sources', type=int, default=0, help='generate from the first N rows only (0 = all)')
    ap.add_argument('--eval_users', type=int, default=0, help='evaluate the first N test users only (0 = all)')
    ap.add_argument('--epoch_batches', type=int, default=0, help='time the first N batches of the epoch (0 = all)')
    ap.add_argument('--stop_after', choices=STAGES, help='stop after this stage')
    ap.add_argument('--table', help='print the table of the scaling_*.json files in this folder')
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    sizes = [int(x) for x in a.users.split(',')]
    if len(sizes) == 1:
        one_size(sizes[0], os.path.abspath(a.out), a.threads, a.gen_sources, a.eval_users, a.stop_after,
                 epoch_batches=a.epoch_batches)
        return
    for n in sizes:                      # a fresh process per size: its peak memory is its own
        subprocess.run([sys.executable, __file__, '--users', str(n), '--out', a.out, '--threads', str(a.threads),
                        '--gen_sources', str(a.gen_sources), '--eval_users', str(a.eval_users),
                        '--epoch_batches', str(a.epoch_batches)]
                       + (['--stop_after', a.stop_after] if a.stop_after else []), check=True)
    print(table(a.out))


if __name__ == '__main__':
    main()
