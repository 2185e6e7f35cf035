"""Copy the small result files of finished runs into the repository, so that tables survive a change of
machine and any session can re-summarise them (``rsir report benchmarks/results/NAME``).

    python benchmarks/keep_results.py runs/evidence_beauty_p20 [benchmarks/results/evidence_beauty_p20]

Kept (same layout): suite.json / summary.json / summary.md / matrix.json of a suite folder, and for every
run folder config.yaml, results.json and round_k/{metrics.json, generation.json, train_stats.json}.
Never checkpoints, synthetic rows or converted data.  Of a run that stopped mid-way (no results.json),
the config and the rounds that finished training (their metrics.json) are kept: the summary shows them.
"""
import os
import shutil
import sys

KEEP_TOP = ('suite.json', 'summary.json', 'summary.md', 'matrix.json')
KEEP_RUN = ('config.yaml', 'results.json')
KEEP_ROUND = ('metrics.json', 'generation.json', 'train_stats.json')


def keep(src, dst):
    n = 0
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in ('model', 'dataset', 'teacher', 'tensorboard', 'plots')]
        rel = os.path.relpath(root, src)
        is_run = 'results.json' in files or ('config.yaml' in files and rel != '.')
        parent = os.path.dirname(root)
        is_round = os.path.basename(root).startswith('round_') and (
            os.path.exists(os.path.join(parent, 'results.json')) or
            (os.path.exists(os.path.join(parent, 'config.yaml')) and 'metrics.json' in files))
        names = (KEEP_TOP if rel == '.' else ()) + (KEEP_RUN if is_run else ()) + (KEEP_ROUND if is_round else ())
        for f in names:
            if f in files:
                os.makedirs(os.path.join(dst, rel), exist_ok=True)
                shutil.copy2(os.path.join(root, f), os.path.join(dst, rel, f))
                n += 1
    return n


if __name__ == '__main__':
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    src = sys.argv[1].rstrip('/')
    dst = sys.argv[2] if len(sys.argv) == 3 else os.path.join('benchmarks', 'results', os.path.basename(src))
    print(f'{keep(src, dst)} files -> {dst}')
