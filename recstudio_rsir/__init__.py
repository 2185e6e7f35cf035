"""recstudio-rsir: Recursive Self-Improving Recommendation (RSIR) for RecStudio.

The public API::

    from recstudio_rsir import SelfImprovingTrainer, run

    result = run(model='SASRec', dataset='embedded', config_dict={'rsir': {'rounds': 2}})
    trainer = SelfImprovingTrainer('SASRec', 'my_data.csv', config_file_list=['my.yaml'], output='runs/x')
    result = trainer.fit()

Augmenters (RSIR, Reordering, Insertion, your own): :class:`Augmenter`, :func:`register_augmenter`.
Results: :class:`RunResult` / :class:`RoundResult`; folders: :class:`RunLayout`.  Errors from bad input:
:class:`UserError` (one line naming the file/option and what is accepted).
"""
from .algorithm.augmenters import (AugmentContext, AugmentOutput, Augmenter, augmenter_names,  # noqa: F401
                                   register_augmenter)
from .api import SelfImprovingTrainer, resolve_config, run  # noqa: F401
from .errors import UserError  # noqa: F401
from .records import RoundResult, RunLayout, RunResult, SuiteLayout  # noqa: F401


def write_report(folder):
    """``report.md`` and ``plots/*.png`` for a run, suite, grid or matrix folder; returns the path."""
    from .analysis.report import write_report as _write
    return _write(folder)


__all__ = ['SelfImprovingTrainer', 'run', 'resolve_config', 'Augmenter', 'AugmentContext', 'AugmentOutput',
           'register_augmenter', 'augmenter_names', 'RunResult', 'RoundResult', 'RunLayout', 'SuiteLayout',
           'UserError', 'write_report']
__version__ = '0.2.0'
