"""The public Python API: :class:`SelfImprovingTrainer` and the one-call :func:`run`.

    from recstudio_rsir import SelfImprovingTrainer

    trainer = SelfImprovingTrainer(model='SASRec', dataset='embedded',
                                   config_dict={'augment': 'rsir', 'rsir': {'rounds': 2}, 'train': {'epochs': 20}},
                                   output='runs/quickstart')
    result = trainer.fit()                      # every round; re-running resumes
    print(result.table())
    best = result.best                          # the round with the best validation NDCG@20
    model = trainer.round_model(best.round)     # a RecStudio model with that round's best weights
    rows = result.rounds[1].synthetic()         # the sequences round 1 added

Configuration is layered exactly like the command line: built-in defaults < the model's YAML <
``config_file_list`` (in order) < ``config_dict`` < the keyword arguments.  ``config_dict`` takes the
shape of a config file (groups ``data``, ``model``, ``train``, ``rsir``, ``aug`` and the top-level
keys) and also the command line's flat spellings (``{'epochs': 5, 'rsir.tau': 10}``).  Every check of
the command line runs in the constructor, with the same one-line :class:`~recstudio_rsir.errors.UserError`.
"""
from __future__ import annotations

import contextlib
import copy
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch

from . import config as C
from . import distributed, host, models
from .errors import UserError
from .records import RoundResult, RunLayout, RunResult

RoundCallback = Callable[[RoundResult], None]


def resolve_config(model=None, dataset=None, config_dict: Optional[Dict[str, Any]] = None,
                   config_file_list: Sequence[str] = (), **top) -> Dict[str, Any]:
    """The resolved configuration dict (see the module docstring for the order of layers)."""
    if isinstance(config_file_list, str):
        config_file_list = [config_file_list]
    model_name = models.register_class(model) if isinstance(model, type) else model
    grouped, flat = {}, {}
    for k, v in (config_dict or {}).items():
        if k in C.GROUPS or k in C.TOP_LEVEL:
            grouped[k] = v
        else:
            flat[k] = v              # 'epochs', 'rsir.tau', 'model.layer_num', ...
    files = list(config_file_list)
    layers = [(f, C.load_yaml(f)) for f in files[1:]] + [('config_dict', grouped)]
    top = dict(top, model_name=model_name, dataset=dataset)
    return C.resolve(config_path=files[0] if files else None, flags=flat, layers=layers,
                     top={k: v for k, v in top.items() if v is not None})


def check(cfg: Dict[str, Any]) -> None:
    """Checks that need the host (backbone options, teacher), before anything is written."""
    from .algorithm import loop
    models.check_model_options(cfg)
    loop.check_teacher(cfg)
    loop.resolve_device(cfg['train']['device'])


class SelfImprovingTrainer:
    """Train a backbone, let it generate training rows, retrain — ``rsir.rounds`` times.

    Args:
        model: a plugin or RecStudio model name (``'SASRec'``, ``'HSTU'``, ``'CL4SRec'``, ...) or a
            RecStudio model class (a ``BaseRetriever`` subclass; its RecStudio config is found through
            its closest RecStudio ancestor).
        dataset: anything ``-d`` accepts: ``'embedded'``, a sequence file, a ``.csv``/``.tsv``, a folder
            holding one RecStudio ``.inter`` file, or a RecStudio dataset name.
        config_dict: options (config-file shape and/or flat flag spellings).
        config_file_list: YAML files, applied in order before ``config_dict``.
        augment: ``'rsir'`` (default here), ``'reorder'``, ``'insert'``, ``'none'`` or a registered name.
        output: the run folder (default ``runs/<model>-<dataset>-<augment>-seed<seed>``).
        callbacks: functions called with each :class:`RoundResult` at the end of its round.
        progress: print per-epoch lines and a generation progress bar.

    Attributes:
        config: the resolved configuration (a dict in config-file shape, written to ``config.yaml``).
        layout: the :class:`RunLayout` of the output folder.
    """

    def __init__(self, model: Union[str, type, None] = None, dataset: Optional[str] = None,
                 config_dict: Optional[Dict[str, Any]] = None, config_file_list: Sequence[str] = (),
                 augment: Optional[str] = None, output: Optional[str] = None,
                 callbacks: Iterable[RoundCallback] = (), progress: bool = True,
                 device: Optional[str] = None, seed: Optional[int] = None):
        host.apply_shims()
        flat = dict(config_dict or {})
        if device is not None:
            flat['train.device'] = device
        if seed is not None:
            flat['train.seed'] = seed
        if augment is None and 'augment' not in flat and not config_file_list:
            augment = 'rsir'
        self.config = resolve_config(model, dataset, flat, config_file_list, augment=augment, output=output)
        self._init(self.config, callbacks, progress)

    @classmethod
    def from_config(cls, cfg: Dict[str, Any], callbacks: Iterable[RoundCallback] = (),
                    progress: bool = True) -> 'SelfImprovingTrainer':
        """A trainer for an already resolved config (what the command line and suites use)."""
        self = cls.__new__(cls)
        self.config = copy.deepcopy(cfg)
        self._init(self.config, callbacks, progress)
        return self

    def _init(self, cfg, callbacks, progress):
        from .algorithm import loop
        host.apply_shims()
        check(cfg)
        cfg['output'] = cfg['output'] or loop.default_output(cfg)
        loop.check_output_folder(cfg, cfg['output'])
        self.layout = RunLayout(cfg['output'])
        self.callbacks: List[RoundCallback] = list(callbacks)
        self.progress = progress
        self._experiment = None
        self.result: Optional[RunResult] = None

    # ------------------------------------------------------------------ running

    def add_callback(self, fn: RoundCallback) -> None:
        """Call ``fn(round_result)`` at the end of every round."""
        self.callbacks.append(fn)

    @property
    def experiment(self):
        """The loaded dataset and model factory (built on first use)."""
        if self._experiment is None:
            from .algorithm import loop
            os.makedirs(self.layout.root, exist_ok=True)
            self._experiment = loop.Experiment(self.config, self.layout.root)
        return self._experiment

    def fit(self) -> RunResult:
        """Run every round (finished rounds in the folder are loaded, an interrupted one resumes) and
        return the :class:`RunResult` (also in ``results.json``)."""
        import shutil
        from .algorithm import loop
        from .atomic import remove_stale_temporaries, run_lock
        threads = self.config['train'].get('num_threads')
        if threads:
            torch.set_num_threads(int(threads))
        root = self.layout.root
        if os.path.exists(root) and not os.path.isdir(root):
            raise UserError(f'--output {root}: is a file; accepted: a folder (new, or one this command wrote)')
        fresh, loaded = not os.path.exists(root), False
        dist, _ = distributed.setup(loop.resolve_device(self.config['train']['device']))
        try:
            with run_lock(root) if dist.is_main else contextlib.nullcontext():   # torchrun: rank 0 writes
                if dist.is_main:
                    remove_stale_temporaries(root)
                ex = self.experiment              # reads and checks the data
                loaded = True
                self.result = loop.run(self.config, progress=self.progress, callbacks=self.callbacks,
                                       experiment=ex)
        except PermissionError as e:
            raise UserError(f'--output {root}: cannot write there ({e.strerror}); accepted: a writable folder') \
                from None
        except UserError:
            if fresh and not loaded and dist.is_main:   # a failed start leaves nothing to block the fixed command
                self._experiment = None
                shutil.rmtree(root, ignore_errors=True)
            raise
        for r in self.result.rounds:
            r._loader = self.round_model
        return self.result

    # ------------------------------------------------------------------ artifacts

    def round_model(self, k: int):
        """Round ``k``'s model with its best weights, in eval mode, on the configured device."""
        from .algorithm import loop
        if not os.path.exists(self.layout.metrics(k)):
            raise UserError(f'round {k} of {self.layout.root} is not finished; call fit() first')
        synthetic = []
        for j in range(1, k + 1):
            synthetic += loop.load_sequences(self.layout.synthetic(j))[0]
        ex = self.experiment
        model, _ = loop.train_or_load(ex, ex.splits(synthetic), self.layout.round_dir(k), k, progress=False,
                                      rows=ex.real_train + synthetic)    # finished: loads and verifies
        return model.eval()

    def load_result(self) -> RunResult:
        """The :class:`RunResult` of a finished run in the output folder (without running anything)."""
        res = RunResult.load(self.layout.results)
        for r in res.rounds:
            r._loader, r._layout = self.round_model, self.layout
        return res


def run(model: Union[str, type, None] = None, dataset: Optional[str] = None,
        config_dict: Optional[Dict[str, Any]] = None, config_file_list: Sequence[str] = (),
        **kwargs) -> RunResult:
    """One call, like RecBole's ``run_recbole`` / RecStudio's ``quickstart.run``: build a
    :class:`SelfImprovingTrainer` with these arguments and return ``fit()``'s :class:`RunResult`."""
    return SelfImprovingTrainer(model, dataset, config_dict, config_file_list, **kwargs).fit()
