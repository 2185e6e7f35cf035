"""Augmenters: what adds training rows in a round.  RSIR, Reordering and Insertion implement the same
small interface, and a user can register one of their own by name::

    from recstudio_rsir import Augmenter, AugmentOutput, register_augmenter

    class Repeat(Augmenter):
        name = 'repeat'
        uses_model = False
        def augment(self, ctx):
            rows = [s + s[-1:] for s in ctx.sources]           # any list of item-id lists
            return AugmentOutput(rows=rows, origin=list(range(len(rows))))

    register_augmenter(Repeat)          # then augment='repeat' in Python, YAML or --augment repeat

Contract of :meth:`Augmenter.augment`: given the round's :class:`AugmentContext` (the model trained
in the previous round, the source rows, the training rows so far), return new rows of item ids in
``1 .. num_items - 1`` and, per row, the index of the source row it came from.  The loop then treats
every augmenter alike: rows shorter than ``rsir.min_len`` and duplicates (of each other and of the
training rows) are dropped, the rest become training-only rows, and the same statistics,
diagnostics and report are written.  Randomness should come from ``ctx.seed`` so that a resumed or
repeated run gives the same rows.

From the command line, a module that registers augmenters is imported with ``--plugins MODULE``
(or ``plugins: [MODULE]`` in a config file).
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import UserError
from ..distributed import SINGLE, Dist


@dataclass
class AugmentContext:
    """What an augmenter sees in round ``round`` (>= 1).

    sources:     the rows to augment: the real training rows, then (``rsir.generate_from: all``)
                 every synthetic row of earlier rounds.
    real_train:  the real training rows (each user's items without validation and test items).
    existing:    every training row so far (real + synthetic); the loop drops duplicates of these.
    model:       the generating model (round ``round - 1``'s best checkpoint, or the teacher's), or
                 None when the augmenter says ``uses_model = False``.
    config:      the resolved run configuration (groups ``rsir``, ``aug``, ...).
    seed:        a seed for this round (``aug.seed + 1000 * round``).
    dist:        the processes of a torchrun job (:mod:`recstudio_rsir.distributed`); an augmenter
                 may deal its work out over them, and must return the same rows on every rank.
    resume_dir:  a folder (not yet created) where the augmenter may keep the progress of this
                 round's work, so that an interrupted round resumes there; the loop removes it once
                 the round's rows are written.  None: keep nothing (RSIR then starts over).
    """
    round: int
    sources: List[List[int]]
    real_train: List[List[int]]
    existing: List[List[int]]
    num_items: int
    max_len: int
    config: Dict[str, Any]
    seed: int
    model: Any = None
    device: Any = None
    fiid: str = 'item_id'
    progress: bool = False
    dist: Dist = SINGLE
    resume_dir: Optional[str] = None


@dataclass
class AugmentOutput:
    """New rows (item-id lists), the source index of each, and a JSON-able summary (``info``;
    an optional ``info['summary']`` line is printed)."""
    rows: List[List[int]]
    origin: List[int]
    info: Dict[str, Any] = field(default_factory=dict)
    filtered: bool = False        # True when the augmenter already applied the loop's filter


class Augmenter:
    """Base class of augmenters (see the module docstring for the contract)."""
    name: str = ''
    uses_model: bool = True       # False: no model is passed (and no teacher is trained for it)

    def augment(self, ctx: AugmentContext) -> AugmentOutput:   # pragma: no cover - interface
        raise NotImplementedError


# ----------------------------------------------------------------------------- registry

_REGISTRY: Dict[str, Any] = {}


def register_augmenter(augmenter, name: Optional[str] = None, overwrite: bool = False):
    """Register an :class:`Augmenter` subclass, instance or zero-argument factory under ``name``
    (default: its ``name`` attribute).  Returns the name."""
    name = name or getattr(augmenter, 'name', None)
    if not name or not isinstance(name, str):
        raise UserError('register_augmenter: give a name (or an Augmenter with a `name` attribute)')
    if name in ('none',) or (name in _REGISTRY and not overwrite and _REGISTRY[name] is not augmenter):
        raise UserError(f'register_augmenter: {name!r} is taken; accepted: a new name, or overwrite=True')
    _REGISTRY[name] = augmenter
    return name


def augmenter_names() -> List[str]:
    return list(_REGISTRY)


def get_augmenter(name: str) -> Augmenter:
    """A fresh augmenter for ``name``; one-line error listing the registered names.  ``A+B`` (e.g.
    ``rsir+reorder``) is :class:`CombinedAugmenter` of the registered ``A`` and ``B``."""
    if name not in _REGISTRY and '+' in name:
        return CombinedAugmenter([get_augmenter(part.strip()) for part in name.split('+')])
    if name not in _REGISTRY:
        raise UserError(f'--augment {name}: unknown augmenter; accepted: none, {", ".join(_REGISTRY)} '
                        '(register your own with recstudio_rsir.register_augmenter, or load a module with --plugins)')
    a = _REGISTRY[name]
    if isinstance(a, Augmenter):
        return a
    obj = a()
    if not isinstance(obj, Augmenter) and not hasattr(obj, 'augment'):
        raise UserError(f'augmenter {name!r}: its factory returned {type(obj).__name__}, not an Augmenter')
    return obj


def import_plugins(modules):
    """Import modules that register augmenters or models (``--plugins a.b,c``)."""
    for m in modules or ():
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise UserError(f'--plugins {m}: cannot import it ({e}); accepted: an importable module name') from None


def check_output(name: str, out: AugmentOutput, ctx: AugmentContext) -> AugmentOutput:
    """One-line errors for an augmenter that broke the contract."""
    if not isinstance(out, AugmentOutput):
        raise UserError(f'augmenter {name!r}: augment() returned {type(out).__name__}, expected AugmentOutput')
    if len(out.rows) != len(out.origin):
        raise UserError(f'augmenter {name!r}: {len(out.rows)} rows but {len(out.origin)} origins')
    for i, (row, o) in enumerate(zip(out.rows, out.origin)):
        if not (0 <= int(o) < len(ctx.sources)):
            raise UserError(f'augmenter {name!r}: row {i} has origin {o}, outside 0..{len(ctx.sources) - 1}')
        if any(not (1 <= int(x) < ctx.num_items) for x in row):
            raise UserError(f'augmenter {name!r}: row {i} holds an item id outside 1..{ctx.num_items - 1}')
    out.rows = [[int(x) for x in r] for r in out.rows]
    out.origin = [int(o) for o in out.origin]
    return out


# ----------------------------------------------------------------------------- built-ins

class RSIRAugmenter(Augmenter):
    """The paper's generator: ``rsir.m`` trajectories per source, hybrid pool, fidelity control
    (see :mod:`recstudio_rsir.algorithm.generation` and ``rsir-spec.md``)."""
    name = 'rsir'
    uses_model = True

    def augment(self, ctx: AugmentContext) -> AugmentOutput:
        import torch
        from .. import config as C
        from ..analysis.stats import item_counts
        from .generation import GenConfig, ModelScorer, filter_sequences, generate_batched, predraw
        max_seq_len = int(ctx.config['data']['max_seq_len'])
        gcfg = GenConfig.from_rsir(ctx.config['rsir'], max_seq_len, C.tau_value(ctx.config['rsir']))
        g = GenConfig(**{**gcfg.__dict__, 'seed': gcfg.seed + 1000 * ctx.round})
        scorer = ModelScorer(ctx.model, ctx.num_items, max_seq_len, ctx.fiid,
                             incremental=bool(ctx.config['rsir'].get('kv_cache', True)))
        bars = []                          # opened at the first batch: after saved progress is reported

        def advance(n):
            if not bars:
                from tqdm import tqdm
                bars.append(tqdm(total=len(ctx.sources) * g.m, desc=f'round {ctx.round} generation', unit='traj',
                                 leave=False))
            bars[0].update(n)
        r = ctx.config['rsir']
        # rsir.target_items: history = each row without its last item (pool, targets and seed come from it)
        gen_sources = [s[:-1] if len(s) > 1 else s for s in ctx.sources] if r.get('target_items') == 'history' \
            else ctx.sources
        draws = predraw(gen_sources, g)
        penalty = None
        if float(r.get('popularity_penalty', 0.0)) > 0:      # popularity-aware picks (beyond the paper)
            counts = item_counts(ctx.real_train, ctx.num_items)
            penalty = float(r['popularity_penalty']) * torch.log1p(torch.as_tensor(counts, dtype=torch.float32))
            penalty = penalty.to(ctx.device)
        checkpoint = None
        if ctx.resume_dir and not ctx.dist.active:          # one process: saved progress, resumable
            from .gen_checkpoint import GenerationCheckpoint, fingerprint
            checkpoint = GenerationCheckpoint(ctx.resume_dir, fingerprint(g, gen_sources, ctx.model, penalty))
        trajectories, stats = generate_batched(scorer, gen_sources, g, draws,
                                               progress=advance if ctx.progress else None,
                                               penalty=penalty, dist=ctx.dist, checkpoint=checkpoint)
        for bar in bars:
            bar.close()
        existing = ctx.existing if r.get('dedup', 'all') == 'all' else []
        kept, origin = filter_sequences(trajectories, [t // g.m for t in range(len(trajectories))], gen_sources,
                                        draws.prefix.tolist(), existing, g.min_len, stats)
        info = dict(stats.__dict__)
        info['acceptance_rate'] = stats.accepted / stats.steps_tried if stats.steps_tried else 0.0
        info['kv_cache'] = scorer.cache is not None
        info['own_history_share'] = stats.own_history_share()
        info['config'] = g.to_json()
        info['summary'] = f'round {ctx.round} ' + stats.summary_line()
        return AugmentOutput(kept, origin, info, filtered=True)


class HeuristicAugmenter(Augmenter):
    """Reordering or Insertion copies of every source row (:mod:`.heuristics`)."""
    uses_model = False

    def __init__(self, kind: str):
        self.kind = self.name = kind

    def augment(self, ctx: AugmentContext) -> AugmentOutput:
        from .generation import GenStats, filter_sequences
        from .heuristics import augment_rows
        t0 = time.time()
        cfg = ctx.config
        rows, origin = augment_rows(self.kind, ctx.sources, ctx.real_train, ctx.num_items, cfg['aug'], ctx.max_len,
                                    ctx.round)
        stats = GenStats(sources=len(ctx.sources), trajectories=len(rows))
        kept, kept_origin = filter_sequences(rows, origin, ctx.sources, [0] * len(rows), ctx.existing,
                                             int(cfg['rsir']['min_len']), stats)
        stats.seconds = time.time() - t0
        info = dict(stats.__dict__)
        info['own_history_share'] = stats.own_history_share()
        info['config'] = {'augment': self.kind, **cfg['aug'], 'seed': ctx.seed}
        info['summary'] = (f'round {ctx.round} {self.kind}: {len(ctx.sources)} sources, {len(rows)} copies; kept '
                           f'{stats.kept} ({stats.dropped_short} too short, {stats.dropped_duplicate} duplicates), '
                           f'mean length {stats.mean_length:.2f} [{stats.seconds:.1f}s]')
        return AugmentOutput(kept, kept_origin, info, filtered=True)


class CombinedAugmenter(Augmenter):
    """Several augmenters in one round (``--augment rsir+reorder``): each adds its rows in turn, a
    later one's rows filtered against the training rows and every row kept before it, so the round's
    rows are the union without duplicates.  ``info['parts']`` holds each part's own info; the
    ``origin`` of every row is its source row, whichever part made it."""

    def __init__(self, parts):
        if len(parts) < 2:
            raise UserError('a combined augmenter needs at least two parts, e.g. --augment rsir+reorder')
        self.parts = parts
        self.name = '+'.join(p.name for p in parts)
        self.uses_model = any(p.uses_model for p in parts)

    def augment(self, ctx: AugmentContext) -> AugmentOutput:
        import dataclasses
        from .generation import GenStats, filter_sequences
        rows, origin, parts = [], [], {}
        for p in self.parts:
            sub = dataclasses.replace(ctx, existing=ctx.existing + rows, model=ctx.model if p.uses_model else None)
            out = check_output(p.name, p.augment(sub), sub)
            new, new_origin, info = out.rows, out.origin, dict(out.info)
            if not out.filtered:
                stats = GenStats(sources=len(ctx.sources), trajectories=len(new))
                new, new_origin = filter_sequences(new, new_origin, ctx.sources, [0] * len(new), sub.existing,
                                                   int(ctx.config['rsir']['min_len']), stats)
                info = {**stats.__dict__, **info}
            rows += new
            origin += new_origin
            parts[p.name] = info
        summary = ' | '.join(i.get('summary', f'{n}: kept {i.get("kept", "?")}') for n, i in parts.items())
        info = {'parts': parts, 'kept': len(rows), 'summary': summary,
                'mean_length': sum(map(len, rows)) / len(rows) if rows else 0.0}
        return AugmentOutput(rows, origin, info, filtered=True)


register_augmenter(RSIRAugmenter)
register_augmenter(lambda: HeuristicAugmenter('reorder'), 'reorder')
register_augmenter(lambda: HeuristicAugmenter('insert'), 'insert')
