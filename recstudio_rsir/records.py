"""Typed records shared by the trainer, the loop, suites and reports: where a run keeps its files
(:class:`RunLayout`, :class:`SuiteLayout`) and what a run produced (:class:`RoundResult`,
:class:`RunResult`).

The JSON files keep their format (``results.json`` is a :class:`RunResult` as a dict); these classes
are the one place that knows the file names and the keys.
"""
from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional

from .errors import UserError

METRICS = ('ndcg@10', 'ndcg@20', 'recall@10', 'recall@20')
BEST_CHECKPOINT = 'best.pt'        # in a training folder (round_k/model/, round_k/teacher/): the best weights
TRAIN_STATE = 'train_state.pt'     # ... and the resume state (training.fit writes both)


# ----------------------------------------------------------------------------- folder layouts

@dataclass(frozen=True)
class RunLayout:
    """The files of one run folder (``--output``)::

        config.yaml            the resolved config
        results.json           a RunResult: every round's row and the popularity baseline
        item_tokens.txt        item id -> original item token (line i = id i)
        dataset/               converted atomic files
        tensorboard/round_k/   per-epoch training loss and validation metrics (TensorBoard)
        report.md, plots/      written by ``rsir report`` (named by :class:`SuiteLayout`, as in a suite folder)
        round_k/
            synthetic.npz      (k >= 1) rows added in round k: items, offsets, origin
            generation.json    the augmenter's summary and diagnostics of those rows
            generation_progress/  (while round k generates) saved progress; removed when the rows are written
            train_stats.json   statistics of round k's training rows
            model/best.pt      best checkpoint; model/train_state.pt the resume state
            metrics.json       validation and test metrics, training summary (marks the round done)
            teacher/           (weak-to-strong) the teacher trained on round k's rows
    """
    root: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def config(self) -> str:
        return self.path('config.yaml')

    @property
    def results(self) -> str:
        return self.path('results.json')

    @property
    def item_tokens(self) -> str:
        return self.path('item_tokens.txt')

    @property
    def dataset_dir(self) -> str:
        return self.path('dataset')

    @property
    def lock(self) -> str:
        return self.path('.lock')

    def tensorboard(self, k: int, label: str = '') -> str:
        return self.path('tensorboard', f'round_{k}{label}')

    def round_dir(self, k: int) -> str:
        return self.path(f'round_{k}')

    def synthetic(self, k: int) -> str:
        return self.path(f'round_{k}', 'synthetic.npz')

    def generation(self, k: int) -> str:
        return self.path(f'round_{k}', 'generation.json')

    def generation_progress(self, k: int) -> str:
        return self.path(f'round_{k}', 'generation_progress')

    def train_stats(self, k: int) -> str:
        return self.path(f'round_{k}', 'train_stats.json')

    def metrics(self, k: int) -> str:
        return self.path(f'round_{k}', 'metrics.json')

    def model_dir(self, k: int) -> str:
        return self.path(f'round_{k}', 'model')

    def best_checkpoint(self, k: int) -> str:
        return os.path.join(self.model_dir(k), BEST_CHECKPOINT)

    def teacher_dir(self, k: int) -> str:
        return self.path(f'round_{k}', 'teacher')


@dataclass(frozen=True)
class SuiteLayout:
    """The files of a suite, grid or matrix folder: ``suite.json``, ``summary.{json,md}``,
    ``report.md``, ``plots/`` and one run folder per method and seed (``<method>/seed<N>/``;
    ``base/seed<N>/`` is round 0 of every method).  A matrix folder has ``matrix.json`` and one
    suite folder per student backbone (``<model>/``)."""
    root: str

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def suite(self) -> str:
        return self.path('suite.json')

    @property
    def matrix(self) -> str:
        return self.path('matrix.json')

    @property
    def summary_json(self) -> str:
        return self.path('summary.json')

    @property
    def summary_md(self) -> str:
        return self.path('summary.md')

    @property
    def report(self) -> str:
        return self.path('report.md')

    @property
    def plots(self) -> str:
        return self.path('plots')

    def run(self, method: str, seed: int) -> RunLayout:
        return RunLayout(self.path(method, f'seed{seed}'))

    def student(self, model: str) -> 'SuiteLayout':
        """(A matrix folder) the suite folder of student backbone ``model``."""
        return SuiteLayout(self.path(model))


# ----------------------------------------------------------------------------- results

@dataclass
class RoundResult:
    """One round of a run: the training data it used and the model it trained.

    ``test`` / ``val``: NDCG@10/20 and Recall@10/20 of the round's best checkpoint (validation
    NDCG@20); ``generation``: the augmenter's summary of the rows added in this round (None for
    round 0).  :meth:`model` and :meth:`synthetic` load the round's artifacts from its folder.
    """
    round: int
    train_sequences: int
    interactions: int
    density: float
    apen: Optional[float]
    apen_reciprocal: Optional[float]
    test: Dict[str, float]
    val: Dict[str, float]
    generation: Optional[Dict[str, Any]]
    train_seconds: float
    epochs_run: int
    best_epoch: int
    change_vs_round0: Dict[str, float] = field(default_factory=dict)
    environment: Optional[Dict[str, Any]] = None   # what trained it (host.environment; older files: None)
    _loader: Optional[Callable[[int], Any]] = field(default=None, repr=False, compare=False)
    _layout: Optional[RunLayout] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """The ``results.json`` row: test metrics at top level (the format reports read)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith('_') and f.name != 'test'}
        d.update({m: self.test[m] for m in METRICS})
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = 'results.json') -> 'RoundResult':
        try:
            test = {m: float(d[m]) for m in METRICS}
            kw = {f.name: d.get(f.name) for f in fields(cls) if not f.name.startswith('_') and f.name != 'test'}
            for key in ('round', 'train_sequences', 'interactions', 'density', 'val'):
                if kw[key] is None:
                    raise KeyError(key)
            kw['change_vs_round0'] = kw['change_vs_round0'] or {}
            return cls(test=test, **kw)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f'{where}: a round entry lacks {e}; the file is damaged (re-run the command '
                            'that wrote it)') from None

    @classmethod
    def of_round(cls, k: int, metrics: Dict[str, Any], stats: Dict[str, Any], generation: Optional[Dict[str, Any]],
                 base: Optional['RoundResult'] = None, layout: Optional[RunLayout] = None) -> 'RoundResult':
        """Round ``k``'s row from its ``metrics.json`` dict, its ``train_stats.json`` dict and the rows'
        ``generation.json`` dict; ``change_vs_round0`` relative to ``base`` (round 0's row; None when
        this is round 0).  A missing key raises KeyError (the caller knows which file it read)."""
        t = metrics['train']
        rr = cls(round=k, train_sequences=stats['sequences'], interactions=stats['interactions'],
                 density=stats['density'], apen=stats.get('apen'), apen_reciprocal=stats.get('apen_reciprocal'),
                 test={m: metrics['test'][m] for m in METRICS}, val={m: metrics['val'][m] for m in METRICS},
                 generation=generation, train_seconds=t['train_seconds'], epochs_run=t['epochs_run'],
                 best_epoch=t['best_epoch'], environment=metrics.get('environment'), _layout=layout)
        ref = base or rr
        rr.change_vs_round0 = {m: (rr.test[m] - ref.test[m]) / ref.test[m] if ref.test[m] else 0.0 for m in METRICS}
        return rr

    @property
    def metrics(self) -> Dict[str, float]:
        """Test metrics (alias of ``test``)."""
        return self.test

    def model(self):
        """The model trained in this round with its best weights (a RecStudio model, eval mode)."""
        if self._loader is None:
            raise UserError('this result was read from disk alone: load models through '
                            'SelfImprovingTrainer(...).round_model(k)')
        return self._loader(self.round)

    def synthetic(self) -> List[List[int]]:
        """The rows this round added (item ids as in ``item_tokens.txt``); [] for round 0."""
        if self.round == 0 or self._layout is None:
            return []
        from .algorithm.loop import load_sequences
        return load_sequences(self._layout.synthetic(self.round))[0]

    def stats(self) -> Dict[str, Any]:
        """``train_stats.json`` of this round (sequences, users, items, density, ApEn, ...)."""
        if self._layout is None:
            return {}
        from .atomic import read_json
        return read_json(self._layout.train_stats(self.round))


@dataclass
class RunResult:
    """What :meth:`SelfImprovingTrainer.fit` returns and ``results.json`` holds."""
    model: str
    dataset: str
    augment: str
    fidelity: Optional[str]
    seed: int
    device: str
    flavour: str
    popularity: Dict[str, Dict[str, float]]
    rounds: List[RoundResult]
    wall_seconds: float
    output: Optional[str] = None
    processes: int = 1           # torchrun processes that ran it (older files: 1)

    def to_dict(self) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ('rounds', 'output')}
        d['rounds'] = [r.to_dict() for r in self.rounds]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = 'results.json') -> 'RunResult':
        if not isinstance(d, dict) or not isinstance(d.get('rounds'), list):
            raise UserError(f'{where}: not a results file of this plugin (no `rounds` list)')
        try:
            kw = {f.name: d[f.name] for f in fields(cls) if f.name not in ('rounds', 'output')
                  and (f.name in d or f.default is MISSING)}
        except KeyError as e:
            raise UserError(f'{where}: missing key {e}; the file is damaged (re-run the command that wrote it)') \
                from None
        return cls(rounds=[RoundResult.from_dict(r, where) for r in d['rounds']], **kw)

    @classmethod
    def load(cls, path: str) -> 'RunResult':
        """Read a ``results.json``; a damaged file is a one-line :class:`UserError`."""
        try:
            with open(path, encoding='utf-8') as f:
                d = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f'{path}: cannot be read as JSON ({str(e).splitlines()[0][:120]})') from None
        res = cls.from_dict(d, path)
        res.output = os.path.dirname(path)
        return res

    @classmethod
    def load_rounds(cls, folder: str) -> Optional['RunResult']:
        """The rounds that finished training in the run folder ``folder`` whose ``results.json`` is not
        written yet (a run stopped mid-way): rounds 0, 1, ... for as long as ``round_k/metrics.json`` and
        ``round_k/train_stats.json`` are there (round 0 of a suite method is the base run's, shared).
        None when not even round 0 finished.  Read from the JSON and YAML files alone;
        ``popularity`` is empty, ``device`` is the configured one and ``wall_seconds`` is the sum of
        the finished rounds' training and generation seconds (a lower bound on the wall clock)."""
        from .atomic import read_json
        from .config import load_yaml
        lay = RunLayout(folder)
        if not os.path.exists(lay.config):
            return None
        cfg = load_yaml(lay.config)                  # a damaged file: one line naming it
        rounds: List[RoundResult] = []
        wall = 0.0
        while os.path.exists(lay.metrics(len(rounds))) and os.path.exists(lay.train_stats(len(rounds))):
            k = len(rounds)
            m, st = read_json(lay.metrics(k)), read_json(lay.train_stats(k))
            gen = read_json(lay.generation(k)) if k > 0 and os.path.exists(lay.generation(k)) else None
            try:
                rr = RoundResult.of_round(k, m, st, gen, base=rounds[0] if rounds else None, layout=lay)
            except (KeyError, TypeError, AttributeError) as e:
                raise UserError(f'{lay.round_dir(k)}: metrics.json or train_stats.json lacks {e}; the files are '
                                'damaged (delete the round folder and re-run the command to train it again)') from None
            wall += rr.train_seconds + float((gen or {}).get('seconds') or 0.0)
            rounds.append(rr)
        if not rounds:
            return None
        augment = cfg.get('augment', 'none')
        return cls(model=cfg.get('model_name', ''), dataset=str(cfg.get('dataset', '')), augment=augment,
                   fidelity=cfg.get('rsir', {}).get('fidelity') if augment == 'rsir' else None,
                   seed=int(cfg.get('train', {}).get('seed', 0)), device=str(cfg.get('train', {}).get('device')),
                   flavour='', popularity={}, rounds=rounds, wall_seconds=wall, output=folder)

    @property
    def best(self) -> RoundResult:
        """The round with the highest validation NDCG@20 (how a user picks a round without test)."""
        return max(self.rounds, key=lambda r: r.val.get('ndcg@20', float('-inf')))

    def table(self) -> str:
        """The per-round table the command line prints."""
        from .algorithm.loop import format_table
        return format_table(self.to_dict())


def as_dict(record) -> Dict[str, Any]:
    """A record as plain JSON-able data (private fields dropped)."""
    if hasattr(record, 'to_dict'):
        return record.to_dict()
    return {k: v for k, v in asdict(record).items() if not k.startswith('_')}
