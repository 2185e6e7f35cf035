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
import itertools
import logging
import math
import time
from dataclasses import dataclass, field

import torch

from .. import host
from ..distributed import SINGLE

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

    def to_json(self) -> dict:
        """The fields as a JSON-safe dict (an infinite tau, fidelity off, as the string ``'inf'``)."""
        return dict(self.__dict__, tau=self.tau if math.isfinite(self.tau) else str(self.tau))


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

    ``query(ctx, lens, rows=None)``: ctx ``[B, L]`` right-padded item ids, lens ``[B]`` -> ``[B, D]``;
    with ``rows`` (``[B]`` row ids of the batch opened by ``begin_batch``) and ``incremental`` on a
    model :mod:`.kvcache` supports, only positions that changed since that row's last query are encoded.
    ``scores(q, lo, hi)``: ``[B, hi - lo]`` scores of item ids lo..hi-1 (id 0, padding, = -inf).
    """

    def __init__(self, model, num_items, max_seq_len, fiid='item_id', incremental=True):
        from . import kvcache
        self.model = model.eval()
        enc = getattr(model, 'query_encoder', None)
        self.cache = kvcache.KVCache(enc) if incremental and enc is not None and kvcache.supports(enc) else None
        self.num_items = num_items
        self.max_seq_len = max_seq_len
        self.fiid = fiid
        self.device = next(model.parameters()).device
        with torch.no_grad():
            self.item_vecs = host.item_vectors(model, num_items)      # [N, D], row 0 = padding
        self.forward_seconds = 0.0       # query encoding + item scoring
        self.query_seconds = 0.0         # query encoding only
        self.forward_calls = 0
        self.score_calls = 0

    def begin_batch(self, rows, length):
        """A new generation batch of ``rows`` trajectories, contexts of at most ``length`` items."""
        if self.cache is not None:
            self.cache.begin(rows, min(length, self.max_seq_len))

    @torch.no_grad()
    def query(self, ctx, lens, rows=None):
        t0 = time.perf_counter()
        q = self.cache.query(ctx, lens, rows) if self.cache is not None and rows is not None else None
        if q is None:
            q = self._full_query(ctx, lens)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.query_seconds += time.perf_counter() - t0
        self.forward_seconds += time.perf_counter() - t0
        self.forward_calls += 1
        return q

    def _full_query(self, ctx, lens):
        """The whole context through the model's encoder (the definition the cache reproduces)."""
        if ctx.shape[1] > self.max_seq_len:  # keep the most recent max_seq_len items
            L = self.max_seq_len
            idx = (lens.clamp(min=L) - L).unsqueeze(1) + torch.arange(L, device=ctx.device)
            ctx = ctx.gather(1, idx.clamp(max=ctx.shape[1] - 1))
            lens = lens.clamp(max=L)
            ctx = ctx * (torch.arange(L, device=ctx.device) < lens.unsqueeze(1))
        batch = {'in_' + self.fiid: ctx, 'seqlen': lens}
        return host.encode_last(self.model, batch)

    @torch.no_grad()
    def scores(self, q, lo, hi):
        t0 = time.perf_counter()
        s = host.item_scores(self.model, q, self.num_items, self.item_vecs, lo, hi)
        self.score_calls += 1
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
    resumed_trajectories: int = 0     # trajectories restored from saved progress (GenerationCheckpoint)

    def own_history_share(self):
        """Share of the generated items (kept rows) that are in the source user's own history."""
        return self.generated_from_own / self.generated_items if self.generated_items else 0.0

    def summary_line(self):
        own = self.own_history_share()
        return (f'generation: {self.sources} sources, {self.trajectories} trajectories, '
                f'{self.steps_tried} steps tried, {self.accepted} accepted, {self.rejected_fidelity} rejected by '
                f'fidelity; kept {self.kept} sequences '
                f'({self.dropped_short} too short, {self.dropped_duplicate} duplicates), mean length '
                f'{self.mean_length:.2f}, {own:.1%} of generated items from the user\'s own history '
                f'[{self.seconds:.1f}s, {self.forward_seconds / max(self.seconds, 1e-9):.0%} in model forward'
                + (f'; {self.resumed_trajectories} trajectories from saved progress' if self.resumed_trajectories
                   else '') + ']')


# the GenStats counters of steps (summed over batches; saved with a GenerationCheckpoint's progress)
STEP_COUNTERS = ('steps_tried', 'accepted', 'rejected_fidelity', 'stopped_max_len', 'stopped_target_done')


# ----------------------------------------------------------------------------- batched generator

def _chunk_size(batch, num_items, memory_mb, bytes_per=4):
    per_row = batch * bytes_per * 2        # the scores and one temporary of the same size
    return max(16, min(num_items, int(memory_mb * 2 ** 20 // max(per_row, 1))))


def _pad_rows(rows, device):
    """Python lists of ids -> (``[R, W]`` long right-padded with 0, ``[R]`` lengths), without a
    Python loop over items."""
    lens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    flat = torch.tensor(list(itertools.chain.from_iterable(rows)), dtype=torch.long)
    W = max(int(lens.max()) if len(rows) else 0, 1)
    out = torch.zeros(len(rows), W, dtype=torch.long)
    out[torch.arange(W).unsqueeze(0) < lens.unsqueeze(1)] = flat
    return out.to(device), lens.to(device)


def _unique_sorted_rows(padded):
    """Per row, the distinct non-zero ids in ascending order, right-padded with 0: ``[R, W]``."""
    big = torch.iinfo(torch.long).max
    x = torch.where(padded > 0, padded, big).sort(1).values
    dup = torch.zeros_like(x, dtype=torch.bool)
    dup[:, 1:] = x[:, 1:] == x[:, :-1]
    x = torch.where(dup, big, x).sort(1).values
    return torch.where(x == big, 0, x)


class _RowBlindScorer:
    """A scorer with only ``query(ctx, lens)`` (a custom or test scorer) behind the row-aware
    interface of :class:`ModelScorer`: ``begin_batch`` does nothing and ``rows`` are ignored, so every
    query encodes its whole context.  Everything else is the wrapped scorer's."""

    def __init__(self, scorer):
        self._scorer = scorer

    def __getattr__(self, name):
        return getattr(self._scorer, name)

    def begin_batch(self, rows, length):
        pass

    def query(self, ctx, lens, rows=None):
        return self._scorer.query(ctx, lens)


@torch.no_grad()
def generate_batched(scorer, sources, cfg: GenConfig, draws: Draws = None, progress=None, penalty=None,
                     dist=SINGLE, checkpoint=None):
    """Generate raw trajectories (before filtering) for all sources.

    ``penalty``: ``[num_items]`` subtracted from an item's score when the next item is *picked*
    (``rsir.popularity_penalty`` x log(1 + training count)); the fidelity test ranks by the model's
    own scores.  None = no penalty.

    ``dist``: with several processes (:mod:`recstudio_rsir.distributed`) batch ``b`` is generated by
    rank ``b % world`` and the trajectories are gathered, so every rank returns the whole output,
    equal to one process's (the randomness is pre-drawn per trajectory); the step counters are
    summed over the ranks, ``forward_seconds`` is their mean.

    ``checkpoint``: a :class:`~.gen_checkpoint.GenerationCheckpoint` (one process only; ignored with
    several): the trajectories of finished batches are saved every few minutes, and a call that finds
    saved progress of the same generator skips the batches it holds (``stats.resumed_trajectories``);
    the output and the step counters equal an uninterrupted call's, ``seconds`` and
    ``forward_seconds`` add the saved ones.

    Returns (trajectories, stats): ``trajectories[t]`` is the list of item ids of trajectory t
    (source ``t // m``).  All tensor work runs on the scorer's device.
    """
    t_start = time.perf_counter()
    scorer = scorer if hasattr(scorer, 'begin_batch') else _RowBlindScorer(scorer)
    f0 = scorer.forward_seconds
    draws = draws or predraw(sources, cfg)
    dev = scorer.device
    T = len(sources) * cfg.m
    stats = GenStats(sources=len(sources), trajectories=T)
    out = [None] * T
    if T == 0:
        return out, stats
    checkpoint = checkpoint if not dist.active else None
    saved = checkpoint.restore(T) if checkpoint is not None else None
    done, s0, f_saved = {}, 0.0, 0.0                                 # what an interrupted call finished
    if saved is not None:
        done, s0, f_saved = saved.rows, saved.seconds, saved.forward_seconds
        for t, seq in done.items():
            out[t] = seq
        for c in STEP_COUNTERS:
            setattr(stats, c, saved.counters[c])
        stats.resumed_trajectories = len(done)
    src, slen = _pad_rows(sources, dev)                              # [S, W], [S]
    own = _unique_sorted_rows(src)                                   # [S, W] distinct own items
    order = torch.argsort(slen.cpu().repeat_interleave(cfg.m), descending=True, stable=True)
    for b, b0 in enumerate(range(0, T, cfg.batch_size)):
        if not dist.mine(b):                                         # another rank's batch
            continue
        tids = order[b0:b0 + cfg.batch_size]                         # similar lengths per batch
        tl = tids.tolist()
        if not done or not all(t in done for t in tl):               # (saved batches are whole)
            res = _generate_batch(scorer, src, slen, own, cfg, draws, tids, stats, penalty)
            for t, seq in zip(tl, res):
                out[t] = seq
            if checkpoint is not None:
                checkpoint.add(tl, res, stats, s0 + time.perf_counter() - t_start,
                               f_saved + scorer.forward_seconds - f0)
        if progress:
            progress(len(tids) * dist.world)
    stats.forward_seconds = f_saved + scorer.forward_seconds - f0
    if dist.active:
        _gather(dist, out, stats)
    stats.seconds = s0 + time.perf_counter() - t_start
    return out, stats


def _gather(dist, out, stats):
    """Fill ``out`` with every rank's trajectories and sum the step counters of ``stats``, in place."""
    mine = {t: seq for t, seq in enumerate(out) if seq is not None}
    parts = dist.gather((mine, [getattr(stats, c) for c in STEP_COUNTERS], stats.forward_seconds))
    for c in STEP_COUNTERS:
        setattr(stats, c, 0)
    for rows, counts, _ in parts:
        for t, seq in rows.items():
            out[t] = seq
        for c, v in zip(STEP_COUNTERS, counts):
            setattr(stats, c, getattr(stats, c) + v)
    stats.forward_seconds = sum(p[2] for p in parts) / len(parts)


class _Rows:
    """The state of the still-active trajectories of one batch; rows leave as they stop.

    ctx ``[A, Lmax+1]`` context, right-padded with 0 (one spare column for a kept failed step);
    lens ``[A]``; own ``[A, K]`` the source's distinct items (ascending, 0 = padding);
    target ``[A, K]`` bool, own items not yet in the context; own_draw / unif ``[A, max_len]``
    pre-drawn pool choices and uniforms; j0 ``[A]`` prefix length; rid ``[A]`` row in the batch;
    first ``[A, Lmax+1]`` bool, False where a prefix position repeats an earlier item (a source
    may repeat items; generated items never repeat).
    """
    names = ('ctx', 'lens', 'own', 'target', 'own_draw', 'unif', 'j0', 'rid', 'first')

    def __init__(self, **kw):
        for k in self.names:
            setattr(self, k, kw[k])

    def keep(self, mask):
        for k in self.names:
            setattr(self, k, getattr(self, k)[mask])

    def __len__(self):
        return len(self.lens)


def _generate_batch(scorer, src, slen, own_all, cfg, draws, tids, stats, penalty=None):
    B, L = len(tids), cfg.max_len
    dev = src.device
    sid = (tids // cfg.m).to(dev)
    S, n = src[sid], slen[sid]                                       # [B, W] sources, [B] lengths
    own = own_all[sid]
    own = own[:, :max(int((own > 0).sum(1).max()), 1)]               # [B, K]
    j = torch.minimum(draws.prefix[tids].to(dev), n)                 # [B] prefix length
    Lmax = max(L, int(j.max()))
    ctx = torch.zeros(B, Lmax + 1, dtype=torch.long, device=dev)
    w = min(S.shape[1], Lmax + 1)
    ctx[:, :w] = torch.where(torch.arange(w, device=dev) < j.unsqueeze(1), S[:, :w], 0)
    jm = int(j.max())
    in_prefix = (own.unsqueeze(2) == ctx[:, :jm].unsqueeze(1)).any(2)   # [B, K]
    target = (own > 0) & ~in_prefix
    pre = ctx[:, :jm]
    earlier = torch.ones(jm, jm, dtype=torch.bool, device=dev).tril(-1)       # [p, p'] p' < p
    repeat = ((pre.unsqueeze(2) == pre.unsqueeze(1)) & earlier).any(2) & (pre > 0)   # [B, jm]
    first = torch.ones_like(ctx, dtype=torch.bool)
    first[:, :jm] = ~repeat
    out_ctx, out_len = ctx.clone(), j.clone()                        # finished rows land here
    st = _Rows(ctx=ctx, lens=j.clone(), own=own, target=target, own_draw=draws.own[tids].to(dev),
               unif=draws.uniform[tids].to(dev), j0=j, rid=torch.arange(B, device=dev), first=first)
    scorer.begin_batch(B, Lmax + 1)

    def retire(mask):
        r = st.rid[mask]
        out_ctx[r] = st.ctx[mask]
        out_len[r] = st.lens[mask]
        st.keep(~mask)

    has_target = st.target.any(1)
    stats.stopped_max_len += int(((st.lens >= L) & has_target).sum())
    stats.stopped_target_done += int((~has_target).sum())
    retire(~((st.lens < L) & has_target))
    pick = torch.zeros(len(st), dtype=torch.long, device=dev)
    if len(st):
        _, pick = _pass(scorer, cfg, st, None, penalty)              # scores(prefix) -> first pick
        retire(pick == 0)                                            # 0 = empty pool
        pick = pick[pick > 0]
    cols = torch.arange(Lmax + 1, device=dev)
    while len(st):
        # provisional context ctx + [pick]; one pass tests it and proposes the next item
        st.ctx[torch.arange(len(st), device=dev), st.lens] = pick
        st.lens += 1
        stats.steps_tried += len(st)
        ok, nxt = _pass(scorer, cfg, st, pick, penalty)
        n_ok = int(ok.sum())
        stats.accepted += n_ok
        stats.rejected_fidelity += len(st) - n_ok
        st.target &= ~((st.own == pick.unsqueeze(1)) & ok.unsqueeze(1))
        if not cfg.keep_failed_step:
            st.lens -= (~ok).long()
            st.ctx = torch.where(~ok.unsqueeze(1) & (cols == st.lens.unsqueeze(1)), 0, st.ctx)
        more, under = st.target.any(1), st.lens < L
        stats.stopped_target_done += int((ok & ~more).sum())
        stats.stopped_max_len += int((ok & more & ~under).sum())
        go = ok & more & under & (nxt > 0)
        retire(~go)
        pick = nxt[go]
    return [row[:n] for row, n in zip(out_ctx.tolist(), out_len.tolist())]


def _pass(scorer, cfg, st, provisional, penalty=None):
    """One forward pass for the rows of ``st``: the fidelity test of the last item (when
    ``provisional`` ``[A]`` is given: the item just appended) and the next pick.

    One ``topk`` over the scores with the context items set to -inf serves both purposes:

    * fidelity: rank of the best remaining target item ``bt`` (the provisional item included, as
      in the reference) = 1 + #(items outside the context scoring > bt) + #(distinct context items
      scoring > bt).  The first count is exact from the top-tau values (if the tau-th of them is
      still > bt the rank exceeds tau anyway); the second comes from the gathered context scores.
    * next pick: own pool = ``target - {provisional}`` from the gathered ``[A, K]`` own scores
      (ascending ids: the first maximum is the lowest id); all-items pool = the best of the top
      values (lowest id among equal values; a chunk whose whole top-k ties falls back to max).

    With a ``penalty`` the pick runs on a second stream of penalised scores (own pool and all items);
    the fidelity test keeps the raw scores.
    The item dimension runs in chunks under ``cfg.memory_mb``; chunk results merge exactly.
    Returns (accepted ``[A]`` bool, next pick ``[A]`` long, 0 = empty pool).
    """
    N, tau = scorer.num_items, cfg.tau
    A = len(st)
    Lc = int(st.lens.max())
    ctx = st.ctx[:, :Lc]                                              # [A, Lc]
    q = scorer.query(ctx, st.lens, rows=st.rid)
    dev = q.device
    neg = float('-inf')
    step = (st.lens - st.j0).clamp(max=cfg.max_len - 1)               # index of the next step's draws
    use_own = st.own_draw.gather(1, step.unsqueeze(1)).squeeze(1)      # [A]
    do_test = provisional is not None and math.isfinite(tau) and tau < N - 1
    k_tau = int(min(tau, N - 1)) if do_test else 0
    greedy = cfg.decoding == 'greedy'
    k = max(k_tau, 1 if greedy else cfg.top_k)
    chunk = _chunk_size(A, N, cfg.memory_mb)
    own_s = ctx_s = top_v = top_i = pick_v = pick_i = None
    best_val = torch.full((A,), neg, device=dev)
    best_idx = torch.zeros(A, dtype=torch.long, device=dev)
    for lo in range(0, N, chunk):
        hi = min(N, lo + chunk)
        C = hi - lo
        s = scorer.scores(q, lo, hi)                                 # [A, C], a fresh tensor
        if s.dtype not in (torch.float32, torch.float64):
            s = s.float()
        if own_s is None:
            own_s = torch.full(st.own.shape, neg, device=dev, dtype=s.dtype)   # [A, K]
            ctx_s = torch.full(ctx.shape, neg, device=dev, dtype=s.dtype)      # [A, Lc]
        inside = (st.own >= lo) & (st.own < hi)
        own_s = torch.where(inside, s.gather(1, (st.own - lo).clamp(0, C - 1)), own_s)
        c = ctx - lo
        inside = (c >= 0) & (c < C)
        if do_test:
            ctx_s = torch.where(inside, s.gather(1, c.clamp(0, C - 1)), ctx_s)
        if lo == 0 and hi == N:
            s.scatter_(1, ctx, neg)                                  # no repeats (0 = padding: -inf already)
        else:
            r, j = inside.nonzero(as_tuple=True)
            s[r, c[r, j]] = neg
        v, i = s.topk(min(k, C), dim=1)                              # [A, k'] order among ties unspecified
        i = i + lo
        if penalty is None:
            ps, pv, pi = s, v, i                                     # the pick stream is the raw one
        else:
            ps = s - penalty[lo:hi]                                  # context items stay -inf
            pv, pi = ps.topk(min(2 if greedy else cfg.top_k, C), dim=1)
            pi = pi + lo
        if greedy:
            first = torch.where(pv == pv[:, :1], pi, N).amin(1)      # lowest id among the chunk's maxima
            tied = pv[:, -1] == pv[:, 0]
            if pv.shape[1] > 1 and bool(tied.any()):                 # all k tie: exact arg-max of those rows
                rows = tied.nonzero(as_tuple=True)[0]
                first[rows] = ps[rows].max(1).indices + lo
            better = pv[:, 0] > best_val                             # strict: earlier chunk wins ties
            best_val = torch.where(better, pv[:, 0], best_val)
            best_idx = torch.where(better, first, best_idx)
        if top_v is None:
            top_v, top_i = v, i
        else:
            cv, ci = torch.cat([top_v, v], 1), torch.cat([top_i, i], 1)
            top_v, o = _stable_topk(cv, ci, k)
            top_i = ci.gather(1, o)
        if penalty is not None and not greedy:
            if pick_v is None:
                pick_v, pick_i = pv, pi
            else:
                cv, ci = torch.cat([pick_v, pv], 1), torch.cat([pick_i, pi], 1)
                pick_v, o = _stable_topk(cv, ci, cfg.top_k)
                pick_i = ci.gather(1, o)
    if do_test:
        bt = own_s.masked_fill(~st.target, neg).amax(1, keepdim=True)  # [A, 1] best remaining target
        above = (top_v[:, :k_tau] > bt).sum(1) + ((ctx_s > bt) & st.first[:, :Lc]).sum(1)
        ok = above < k_tau                                           # rank = 1 + above <= tau
    else:
        ok = torch.ones(A, dtype=torch.bool, device=dev)
    pool = st.target if provisional is None else st.target & (st.own != provisional.unsqueeze(1))
    own_p = own_s if penalty is None else own_s - penalty[st.own]
    own_v = own_p.masked_fill(~pool, neg)                             # [A, K] own pool, ascending ids
    if greedy:
        v, i = own_v.max(1)
        own_pick = torch.where(v > neg, st.own.gather(1, i.unsqueeze(1)).squeeze(1), 0)
        all_pick = torch.where(best_val > neg, best_idx, 0)
        nxt = torch.where(use_own, own_pick, all_pick)
    else:
        kk = cfg.top_k
        ov, oi = _stable_topk(own_v, st.own, kk)
        oi = st.own.gather(1, oi)
        sv, si = (top_v, top_i) if penalty is None else (pick_v, pick_i)
        av, ai = _stable_topk(sv, si, kk)
        ai = si.gather(1, ai)
        ov, oi = _pad_cols(ov, kk, neg), _pad_cols(oi, kk, 0)
        av, ai = _pad_cols(av, kk, neg), _pad_cols(ai, kk, 0)
        vals = torch.where(use_own.unsqueeze(1), ov, av)
        idx = torch.where(use_own.unsqueeze(1), oi, ai)
        empty = vals[:, 0] == neg
        nxt = _sample_from_topk(vals, idx, cfg.temperature, st.unif.gather(1, step.unsqueeze(1)).squeeze(1))
        nxt = torch.where(empty, 0, nxt)
    return ok, nxt


def _pad_cols(x, k, fill):
    """Right-pad ``[A, k']`` top-k values (fill -inf) or ids (fill 0) to k columns."""
    if x.shape[1] >= k:
        return x
    return torch.cat([x, x.new_full((x.shape[0], k - x.shape[1]), fill)], 1)


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
def generate_reference(scorer, sources, cfg: GenConfig, draws: Draws = None, penalty=None):
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
            pick = scores if penalty is None else scores - penalty       # what the pick ranks by
            if cfg.decoding == 'greedy':
                item = max(pool, key=lambda i: (float(pick[i]), -i))
            else:
                ranked = sorted(pool, key=lambda i: (-float(pick[i]), i))[:cfg.top_k]
                vals = torch.stack([pick[i] for i in ranked])
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

def filter_sequences(trajectories, origin, sources, prefix, existing, min_len, stats):
    """Keep rows of length >= min_len that duplicate neither each other nor ``existing`` (the
    current training rows).  ``origin[t]`` is the index in ``sources`` that row t came from and
    ``prefix[t]`` how many of its first items were copied, not generated (RSIR's seed prefix; 0
    for the heuristic augmentations).  Fills the kept/dropped/length/own-share fields of ``stats``.
    Returns (kept rows, their origins)."""
    seen = set(map(tuple, existing))
    kept, kept_origin = [], []
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
        kept_origin.append(origin[t])
        src = sources[origin[t]]
        own = set(src)
        gen = seq[min(int(prefix[t]), len(src)):]
        stats.generated_items += len(gen)
        stats.generated_from_own += sum(1 for i in gen if i in own)
        stats.length_hist[len(seq)] = stats.length_hist.get(len(seq), 0) + 1
    stats.kept = len(kept)
    stats.mean_length = sum(map(len, kept)) / len(kept) if kept else 0.0
    stats.length_hist = dict(sorted(stats.length_hist.items()))
    return kept, kept_origin
