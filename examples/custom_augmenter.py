"""A custom augmenter, registered by name and used like RSIR: 'swap' exchanges two adjacent items
of every source row (a cheap local perturbation).

    python examples/custom_augmenter.py [--quick] [--output runs/example_custom_augmenter]

The same augmenter from the command line (this module registers it when imported):

    python run_recstudio.py -d embedded --plugins examples.custom_augmenter --augment swap --rsir.rounds 1
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recstudio_rsir import AugmentContext, AugmentOutput, Augmenter, register_augmenter  # noqa: E402


class SwapAugmenter(Augmenter):
    """One copy per source row with two adjacent items exchanged (rows of one item give none)."""
    name = 'swap'
    uses_model = False            # no model needed: no teacher is trained, nothing is scored

    def augment(self, ctx: AugmentContext) -> AugmentOutput:
        rng = np.random.default_rng(ctx.seed)      # ctx.seed differs per round and is fixed per run
        rows, origin = [], []
        for i, s in enumerate(ctx.sources):
            if len(s) < 2:
                continue
            j = int(rng.integers(0, len(s) - 1))
            row = list(s)
            row[j], row[j + 1] = row[j + 1], row[j]
            rows.append(row)
            origin.append(i)
        # the loop drops rows shorter than rsir.min_len and duplicates of training rows
        return AugmentOutput(rows=rows, origin=origin, info={'swapped': len(rows)})


register_augmenter(SwapAugmenter, overwrite=True)

if __name__ == '__main__':
    from _common import example_args
    from recstudio_rsir import SelfImprovingTrainer
    args = example_args(__doc__, 'runs/example_custom_augmenter')
    result = SelfImprovingTrainer('SASRec', 'embedded', augment='swap', output=args.output,
                                  config_dict={'train': args.train, 'model': args.model, 'rsir': {'rounds': 1}}).fit()
    print(result.table())
    print(f"round 1: {result.rounds[1].generation['summary']}")
