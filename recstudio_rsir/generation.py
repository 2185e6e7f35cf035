"""RSIR synthetic-sequence generation: the batched generator and a plain reference loop.

Rules (README "Configuration" and ``../shared/docs/rsir-spec.md`` section 2), per source sequence ``s``
and each of its ``m`` trajectories::

    ctx    = s[:j]                  j = 1 (seed_prefix: first) or a pre-drawn j in [1, min(len(s), max_len) - 1]
    target = set(s) - set(ctx)      the remaining true items
    while len(ctx) < max_len and target:
        pool  = own items of s if own[t, step] else every item;  minus the items already in ctx
        item  = argmax of scores(ctx) over pool (lowest id on ties)      [decoding: greedy]
                or top-k sampling with temperature using a pre-drawn uniform [decoding: sample]
        accept iff max_{x in target} score'(x) >= tau-th largest score'   with score' = scores(ctx+[item])
                (equivalently min rank <= tau, rank = 1 + #items scored strictly higher)
        accepted: ctx += [item]; target -= {item}       rejected: stop (keep_failed_step: keep item)
    keep ctx if len(ctx) >= min_len, then drop duplicates (of each other and of the training rows)

All randomness is drawn up front from the generator's own ``torch.Generator`` (:func:`predraw`), so
the batched generator and the reference see the same pool choices, prefixes and uniforms, and the
output does not depend on the batch size.  One forward pass per step serves both the fidelity test
of the item just added and the choice of the next item.
"""
import logging
import math
import time
from dataclasses import dataclass, field

import torch

from . import host

log = logging.getLogger('recstudio_rsir')


@dataclass
class GenConfig:
    m: int = 5
    p: float = 0.5
    tau: float = 20            # math.inf = fidelity off
    max_len: int = 50
    min_len: int = 3
    decoding: str = 'greedy'   # greedy | sample
    top_k: int = 10
    temperature: float = 1.0
    seed_prefix: str = 'first'  # first | random
    keep_failed_step: bool = False
    batch_size: int = 1024     # trajectories per batch
    memory_mb: float = 512     # budget for one [batch, item-chunk] float tensor
    seed: int = 0

    @classmethod
    def from_rsir(cls, r, max_seq_len, tau):
        return cls(m=int(r['m']), p=float(r['p']), tau=tau, max_len=int(r['max_len'] or max_seq_len),
                   min_len=int(r['min_len']), decoding=r['decoding'], top_k=int(r['top_k']),
                   temperature=float(r['temperature']), seed_prefix=r['seed_prefix'],
                   keep_failed_step=bool(r['keep_failed_step']), batch_size=int(r['batch_size']),
                   memory_mb=float(r['memory_mb']), seed=int(r['seed']))


@dataclass
class Draws:
    """Pre-drawn randomness for T = len(sources) * m trajectories (trajectory t = source t // m).

    own:     ``[T, max_len]`` bool, True = the step's pool is the user's own items.
    prefix:  ``[T]`` long, seed prefix length j.
    uniform: ``[T, max_len]`` float in [0, 1), used by sampling decoding.
    """
    own: torch.Tensor
    prefix: torch.Tensor
    uniform: torch.Tensor


def predraw(sources, cfg: GenConfig):
    g = torch.Generator().manual_seed(int(cfg.seed))
    T = len(sources) * cfg.m
    own = torch.rand(T, cfg.max_len, generator=g) < cfg.p
    lens = torch.tensor([len(s) for s in sources], dtype=torch.long).repeat_interleave(cfg.m)
    if cfg.seed_prefix == 'random':
        u = torch.rand(T, generator=g)
        prefix = 1 + (u * (lens - 1).clamp(min=1).float()).long()   # j in [1, len-1]
        prefix = torch.minimum(prefix, (lens - 1).clamp(min=1)).clamp(max=max(cfg.max_len - 1, 1))
    else:
        prefix = torch.ones(T, dtype=torch.long)
    uniform = torch.rand(T, cfg.max_len, generator=g)
    return Draws(own, prefix, uniform)


class ModelScorer:
    """Scores of every item id for contexts, through the host model (any RecStudio retriever).

    ``query(ctx, lens)``: ctx ``[B, L]`` right-padded item ids, lens ``[B]`` -> ``[B, D]``.
    ``scores(q, lo, hi)``: ``[B, hi - lo]`` scores of item ids lo..hi-1 (id 0, padding, = -inf).
    """

    def __init__(self, model, num_items, max_seq_len, fiid='item_id'):
        self.model = model.eval()
        self.num_items = num_items
        self.max_seq_len = max_seq_len
        self.fiid = fiid
        self.device = next(model.parameters()).device
        with torch.no_grad():
            self.item_vecs = host.item_vectors(model, num_items)      # [N - 1, D]
        self.forward_seconds = 0.0
        self.forward_calls = 0

    @torch.no_grad()
    def query(self, ctx, lens):
        t0 = time.perf_counter()
        if ctx.shape[1] > self.max_seq_len:  # keep the most recent max_seq_len items
            L = self.max_seq_len
            idx = (lens.clamp(min=L) - L).unsqueeze(1) + torch.arange(L, device=ctx.device)
            ctx = ctx.gather(1, idx.clamp(max=ctx.shape[1] - 1))
            lens = lens.clamp(max=L)
            ctx = ctx * (torch.arange(L, device=ctx.device) < lens.unsqueeze(1))
        batch = {'in_' + self.fiid: ctx, 'seqlen': lens}
        q = host.encode_last(self.model, batch)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - t0
        self.forward_calls += 1
        return q

    @torch.no_grad()
    def scores(self, q, lo, hi):
        t0 = time.perf_counter()
        a = max(lo, 1)
        s = self.model.score_func(q, self.item_vecs[a - 1:hi - 1]) if hi > a else q.new_zeros(len(q), 0)
        if lo == 0:
            s = torch.cat([torch.full((len(q), 1), float('-inf'), device=q.device, dtype=s.dtype), s], 1)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.forward_seconds += time.perf_counter() - t0
        return s


@dataclass
class GenStats:
    sources: int = 0
    trajectories: int = 0
    steps_tried: int = 0
    accepted: int = 0
    rejected_fidelity: int = 0
    stopped_max_len: int = 0
    stopped_target_done: int = 0
    kept: int = 0
    dropped_short: int = 0
    dropped_duplicate: int = 0
    generated_items: int = 0          # items added after the seed prefix, in kept sequences
    generated_from_own: int = 0       # ... of which in the source user's own history
    mean_length: float = 0.0
    seconds: float = 0.0
    forward_seconds: float = 0.0
    length_hist: dict = field(default_factory=dict)

    def summary_line(self):
        own = self.generated_from_own / self.generated_items if self.generated_items else 0.0
        return (f'generation: {self.sources} sources, {self.trajectories} trajectories, {self.steps_tried} steps tried, '
                f'{self.accepted} accepted, {self.rejected_fidelity} rejected by fidelity; kept {self.kept} sequences '
                f'({self.dropped_short} too short, {self.dropped_duplicate} duplicates), mean length '
                f'{self.mean_length:.2f}, {own:.1%} of generated items from the user\'s own history '
                f'[{self.seconds:.1f}s, {self.forward_seconds / max(self.seconds, 1e-9):.0%} in model forward]')


# ----------------------------------------------------------------------------- batched generator

def _chunk_size(batch, num_items, memory_mb, bytes_per=4):
    per_row = batch * bytes_per * 3        # scores + a masked copy + comparisons
    return max(256, min(num_items, int(memory_mb * 2 ** 20 // max(per_row, 1))))


@torch.no_grad()
def generate_batched(scorer, sources, cfg: GenConfig, draws: Draws = None, progress=None):
    """Generate raw trajectories (before filtering) for all sources.

    Returns (trajectories, stats): ``trajectories[t]`` is the list of item ids of trajectory t
    (source ``t // m``).  All tensor work runs on the scorer's device.
    """
    t_start = time.perf_counter()
    f0 = scorer.forward_seconds
    draws = draws or predraw(sources, cfg)
    dev = scorer.device
    N = scorer.num_items
    T = len(sources) * cfg.m
    stats = GenStats(sources=len(sources), trajectories=T)
    out = [None] * T
    tau = cfg.tau
    order = sorted(range(T), key=lambda t: -len(sources[t // cfg.m]))  # similar lengths per batch
    for b0 in range(0, T, cfg.batch_size):
        tids = torch.tensor(order[b0:b0 + cfg.batch_size], dtype=torch.long)
        res = _generate_batch(scorer, sources, cfg, draws, tids, dev, N, tau, stats)
        for t, seq in zip(tids.tolist(), res):
            out[t] = seq
        if progress:
            progress(len(tids))
    stats.seconds = time.perf_counter() - t_start
    stats.forward_seconds = scorer.forward_seconds - f0
    return out, stats


def _generate_batch(scorer, sources, cfg, draws, tids, dev, N, tau, stats):
    B = len(tids)
    m, L = cfg.m, cfg.max_len
    src = [sources[t // m] for t in tids.tolist()]
    slen = torch.tensor([len(s) for s in src], dtype=torch.long)
    smax = int(slen.max())
    S = torch.zeros(B, smax, dtype=torch.long)
    for i, s in enumerate(src):
        S[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    S = S.to(dev)                                                    # [B, smax] source items
    rows = torch.arange(B, device=dev)
    own_mask = torch.zeros(B, N, dtype=torch.bool, device=dev)       # [B, N] the user's own items
    own_mask[rows.unsqueeze(1).expand_as(S), S] = True
    own_mask[:, 0] = False
    j = torch.minimum(draws.prefix[tids], slen).to(dev)              # [B] prefix length
    Lmax = max(L, int(j.max()))
    ctx = torch.zeros(B, Lmax + 1, dtype=torch.long, device=dev)     # [B, Lmax+1] context (+1: kept failed step)
    pos = torch.arange(smax, device=dev)
    pre = pos.unsqueeze(0) < j.unsqueeze(1)                          # [B, smax] prefix positions
    w = min(smax, Lmax + 1)
    ctx[:, :w] = torch.where(pre, S, 0)[:, :w]
    lens = j.clone()                                                 # [B]
    in_ctx = torch.zeros(B, N, dtype=torch.bool, device=dev)         # [B, N] items already in ctx
    in_ctx[rows.unsqueeze(1).expand_as(S), torch.where(pre, S, 0)] = True
    in_ctx[:, 0] = False
    target = own_mask & ~in_ctx                                      # [B, N] remaining true items
    own_draw = draws.own[tids].to(dev)                               # [B, L]
    unif = draws.uniform[tids].to(dev)                               # [B, L]
    j0 = j.clone()

    # Initial pass: scores(prefix) -> the first pick.  `active` rows still generate.
    active = rows[(lens < L) & target.any(1)]
    stopped_len = int(((lens >= L) & target.any(1)).sum())
    stopped_done = int((~target.any(1)).sum())
    pick = torch.zeros(B, dtype=torch.long, device=dev)
    if len(active):
        pick[active] = _pass(scorer, cfg, ctx, lens, active, own_mask, in_ctx, target, own_draw, unif,
                             j0, N, tau, test=None)[1]
        active = active[pick[active] > 0]          # 0 = empty pool: nothing to propose
    while len(active):
        a = active
        # provisional context ctx + [pick]
        ctx[a, lens[a]] = pick[a]
        lens[a] += 1
        in_ctx[a, pick[a]] = True
        stats.steps_tried += len(a)
        ok, nxt = _pass(scorer, cfg, ctx, lens, a, own_mask, in_ctx, target, own_draw, unif, j0, N, tau,
                        test=True)
        acc, rej = a[ok], a[~ok]
        stats.accepted += len(acc)
        stats.rejected_fidelity += len(rej)
        target[acc, pick[acc]] = False
        if not cfg.keep_failed_step and len(rej):
            lens[rej] -= 1
            in_ctx[rej, pick[rej]] = False
            ctx[rej, lens[rej]] = 0
        pick[acc] = nxt[ok]
        more_target = target[acc].any(1)
        under = lens[acc] < L
        stopped_done += int((~more_target).sum())
        stopped_len += int((more_target & ~under).sum())
        active = acc[more_target & under & (pick[acc] > 0)]
    stats.stopped_max_len += stopped_len
    stats.stopped_target_done += stopped_done
    lens_c = lens.cpu()
    ctx_c = ctx.cpu()
    return [ctx_c[i, :lens_c[i]].tolist() for i in range(B)]


def _pass(scorer, cfg, ctx, lens, a, own_mask, in_ctx, target, own_draw, unif, j0, N, tau, test):
    """One forward pass for rows ``a``: fidelity test of the last item (if ``test``) and next pick.

    The item dimension is processed in chunks: running tau-th-largest values, running best target
    score, running masked arg-max (earlier chunk wins ties = lowest id) or running top-k for sampling.
    Returns (accepted ``[A]`` bool, next pick ``[A]`` long).
    """
    A = len(a)
    Lc = int(lens[a].max())
    q = scorer.query(ctx[a, :Lc], lens[a])
    step = (lens[a] - j0[a]).clamp(max=cfg.max_len - 1)              # index of the next step's draws
    use_own = own_draw[a, step]                                      # [A]
    chunk = _chunk_size(A, N, cfg.memory_mb)
    do_test = test is not None and math.isfinite(tau) and tau < N - 1
    k_tau = int(min(tau, N - 1)) if do_test else 0
    top_vals = None
    best_target = torch.full((A,), float('-inf'), device=q.device)
    best_val = torch.full((A,), float('-inf'), device=q.device)
    best_idx = torch.zeros(A, dtype=torch.long, device=q.device)
    k_s = cfg.top_k
    samp_vals = samp_idx = None
    for lo in range(0, N, chunk):
        hi = min(N, lo + chunk)
        s = scorer.scores(q, lo, hi)                                 # [A, C]
        if do_test:
            tv = s.topk(min(k_tau, hi - lo), dim=1).values
            top_vals = tv if top_vals is None else torch.cat([top_vals, tv], 1).topk(
                min(k_tau, top_vals.shape[1] + tv.shape[1]), dim=1).values
            tgt = target[a, lo:hi]
            best_target = torch.maximum(best_target, s.masked_fill(~tgt, float('-inf')).max(1).values)
        allowed = torch.where(use_own.unsqueeze(1), own_mask[a, lo:hi], torch.ones_like(own_mask[a, lo:hi]))
        allowed &= ~in_ctx[a, lo:hi]
        if lo == 0:
            allowed[:, 0] = False
        ms = s.masked_fill(~allowed, float('-inf'))
        if cfg.decoding == 'greedy':
            v, i = ms.max(1)
            better = v > best_val
            best_val = torch.where(better, v, best_val)
            best_idx = torch.where(better, i + lo, best_idx)
        else:
            v, i = ms.topk(min(k_s, hi - lo), dim=1)
            if samp_vals is None:
                samp_vals, samp_idx = v, i + lo
            else:
                cv, ci = torch.cat([samp_vals, v], 1), torch.cat([samp_idx, i + lo], 1)
                samp_vals, o = _stable_topk(cv, ci, k_s)
                samp_idx = ci.gather(1, o)
    if do_test:
        kth = top_vals[:, -1]
        ok = best_target >= kth
    else:
        ok = torch.ones(A, dtype=torch.bool, device=q.device)
    if cfg.decoding == 'greedy':
        nxt = best_idx
    else:
        nxt = _sample_from_topk(samp_vals, samp_idx, cfg.temperature, unif[a, step])
    return ok, nxt


def _stable_topk(vals, idx, k):
    """Top-k by value, ties broken by lower item id. Returns (values, positions into vals)."""
    k = min(k, vals.shape[1])
    key_order = torch.argsort(idx, dim=1, stable=True)
    v_sorted = vals.gather(1, key_order)
    o = torch.argsort(v_sorted, dim=1, descending=True, stable=True)[:, :k]
    pos = key_order.gather(1, o)
    return vals.gather(1, pos), pos


def _sample_from_topk(vals, idx, temperature, u):
    """Inverse-CDF sample from softmax(vals / temperature) with uniforms ``u`` ``[A]``.

    ``vals``/``idx`` ``[A, k]`` sorted by descending value (ties: lower id first); -inf entries
    (pools smaller than k) get probability 0."""
    order = torch.argsort(idx, dim=1, stable=True)
    vals, idx = vals.gather(1, order), idx.gather(1, order)
    o = torch.argsort(vals, dim=1, descending=True, stable=True)
    vals, idx = vals.gather(1, o), idx.gather(1, o)
    p = torch.softmax(vals / temperature, dim=1)
    c = p.cumsum(1)
    k = (c < u.unsqueeze(1) * c[:, -1:]).sum(1).clamp(max=vals.shape[1] - 1)
    return idx.gather(1, k.unsqueeze(1)).squeeze(1)


# ----------------------------------------------------------------------------- reference loop

@torch.no_grad()
def generate_reference(scorer, sources, cfg: GenConfig, draws: Draws = None):
    """The same rules as :func:`generate_batched`, one trajectory and one item at a time.

    Written for reading, not speed: Python sets for the pool, the context and the target; one
    model call per step with a batch of one; rank of each target item computed separately.
    """
    t_start = time.perf_counter()
    f0 = scorer.forward_seconds
    draws = draws or predraw(sources, cfg)
    N = scorer.num_items
    stats = GenStats(sources=len(sources), trajectories=len(sources) * cfg.m)
    out = []
    dev = scorer.device

    def scores_of(ctx):
        c = torch.tensor([ctx], dtype=torch.long, device=dev)
        q = scorer.query(c, torch.tensor([len(ctx)], device=dev))
        return scorer.scores(q, 0, N)[0]

    for t in range(stats.trajectories):
        s = sources[t // cfg.m]
        j = min(int(draws.prefix[t]), len(s))
        ctx = list(s[:j])
        own = set(s)
        target = own - set(ctx)
        scores = scores_of(ctx)
        while len(ctx) < cfg.max_len and target:
            step = min(len(ctx) - j, cfg.max_len - 1)
            pool = own if bool(draws.own[t, step]) else set(range(1, N))
            pool = sorted(pool - set(ctx))
            if not pool:
                break
            if cfg.decoding == 'greedy':
                item = max(pool, key=lambda i: (float(scores[i]), -i))
            else:
                ranked = sorted(pool, key=lambda i: (-float(scores[i]), i))[:cfg.top_k]
                vals = torch.stack([scores[i] for i in ranked])
                idx = torch.tensor(ranked, device=dev)
                item = int(_sample_from_topk(vals.unsqueeze(0), idx.unsqueeze(0), cfg.temperature,
                                             draws.uniform[t, step].view(1).to(dev))[0])
            new_scores = scores_of(ctx + [item])
            stats.steps_tried += 1
            if math.isfinite(cfg.tau) and cfg.tau < N - 1:
                ranks = [1 + int((new_scores > new_scores[x]).sum()) for x in target]
                accepted = min(ranks) <= cfg.tau
            else:
                accepted = True
            if accepted:
                stats.accepted += 1
                ctx.append(item)
                target.discard(item)
                scores = new_scores
            else:
                stats.rejected_fidelity += 1
                if cfg.keep_failed_step:
                    ctx.append(item)
                break
        else:
            if target:
                stats.stopped_max_len += 1
            else:
                stats.stopped_target_done += 1
        out.append(ctx)
    stats.seconds = time.perf_counter() - t_start
    stats.forward_seconds = scorer.forward_seconds - f0
    return out, stats


# ----------------------------------------------------------------------------- filtering

def filter_sequences(trajectories, sources, m, prefix, existing, min_len, stats):
    """Keep trajectories of length >= min_len that duplicate neither each other nor ``existing``
    (the current training rows).  ``prefix[t]`` is trajectory t's seed-prefix length.
    Fills the kept/dropped/length/own-share fields of ``stats``."""
    seen = set(map(tuple, existing))
    kept = []
    for t, seq in enumerate(trajectories):
        if len(seq) < min_len:
            stats.dropped_short += 1
            continue
        key = tuple(seq)
        if key in seen:
            stats.dropped_duplicate += 1
            continue
        seen.add(key)
        kept.append(seq)
        src = sources[t // m]
        own = set(src)
        gen = seq[min(int(prefix[t]), len(src)):]
        stats.generated_items += len(gen)
        stats.generated_from_own += sum(1 for i in gen if i in own)
        stats.length_hist[len(seq)] = stats.length_hist.get(len(seq), 0) + 1
    stats.kept = len(kept)
    stats.mean_length = sum(map(len, kept)) / len(kept) if kept else 0.0
    stats.length_hist = dict(sorted(stats.length_hist.items()))
    return kept
