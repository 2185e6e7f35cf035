"""Command line.

    python run_recstudio.py -m SASRec -d embedded --augment rsir --rsir.rounds 2 --epochs 20   # = rsir run
    python run_recstudio.py ... --augment rsir --rsir.tau 5,10,20 --rsir.p 0.3,0.5   # a grid (comma lists)
    rsir stats -d ../shared/data/seqrec/Beauty.txt.gz      # dataset statistics
    rsir suite yamls/compare_embedded.yaml [--seeds 1,2,3]  # methods x seeds, summary and report
    rsir matrix -d embedded --models SASRec,HSTU            # teacher x student matrix
    rsir report runs/compare_embedded                       # report.md + plots of any of those folders
"""
import argparse
import logging
import os
import sys

from . import config as C
from .errors import UserError

USAGE = """run_recstudio.py -m MODEL -d DATASET [--augment none|rsir|reorder|insert] [--config FILE.yaml]
                        [--device cpu|cuda:N] [--seed N] [--output DIR] [--quiet]
                        [--KEY VALUE ...] [--GROUP.KEY VALUE ...]

  -d accepts: embedded[:SEED] | a sequence file (user item item ..., .txt or .gz) |
              a .csv/.tsv file with header user,item[,timestamp] | a folder of atomic files |
              a RecStudio dataset name
  --KEY VALUE sets a train/data/rsir option by name (e.g. --epochs 5 --batch_size 256 --tau 10),
  --GROUP.KEY VALUE sets one in a group (--rsir.rounds 2, --model.layer_num 1, --train.regime prefix);
  any other --KEY is passed to the backbone (RecStudio's model config)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are the plugin's one line (``error: ...``, exit 2) instead of the usage
    text and a second line; e.g. ``--augment -.inf`` (a value argparse takes for an option)."""

    def error(self, message):
        hint = ''
        if 'expected one argument' in message:                 # "argument -d/--dataset: expected ..."
            opt = message.split()[1].rstrip(':').split('/')[-1]
            hint = f' (missing, or it starts with -: write {opt}=VALUE)'
        raise UserError(f'{self.prog}: {message}{hint}; see {self.prog} --help')


def _split_flags(argv):
    """Separate known options from --key value pairs."""
    p = _Parser(prog='run_recstudio.py', usage=USAGE, add_help=True)
    p.add_argument('-m', '--model', dest='model_name')
    p.add_argument('-d', '--dataset')
    p.add_argument('--augment')
    p.add_argument('--config')
    p.add_argument('--device')
    p.add_argument('--seed', type=int)
    p.add_argument('--output')
    p.add_argument('--plugins', help='comma list of modules to import (they may register augmenters)')
    p.add_argument('--quiet', action='store_true')
    known, rest = p.parse_known_args(argv)
    flags = {}
    i = 0
    from .config import parse_value
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith('--') or len(tok) < 3:
            raise UserError(f'unexpected argument {tok!r}; options are written --key value')
        key = tok[2:]
        if '=' in key:
            key, val = key.split('=', 1)
            i += 1
        else:
            if i + 1 >= len(rest) or rest[i + 1].startswith('--'):
                raise UserError(f'--{key}: missing value')
            val = rest[i + 1]
            i += 2
        flags[key] = parse_value(val)
    return known, flags


def _with_known(known, flags):
    """--device / --seed given to any command are the train options."""
    if known.device is not None:
        flags['train.device'] = known.device
    if known.seed is not None:
        flags['train.seed'] = known.seed
    return flags


def run_main(argv):
    known, flags = _split_flags(argv)
    _with_known(known, flags)
    top = {'model_name': known.model_name, 'dataset': known.dataset, 'augment': known.augment,
           'output': known.output, 'plugins': known.plugins}
    from .analysis import suite as S
    fixed, axes = S.grid_axes(flags)
    cfg = C.resolve(config_path=known.config, flags=fixed, top=top)
    if axes:
        return grid_main(cfg, known, fixed, top, axes)
    from .api import SelfImprovingTrainer
    trainer = SelfImprovingTrainer.from_config(cfg, progress=not known.quiet)
    _set_threads(trainer.config)
    results = trainer.fit()
    if _rank() > 0:                                   # torchrun: rank 0 prints the table
        return 0
    print()
    print(f"{cfg['model_name']} on {results.dataset}, augment={cfg['augment']}, seed {cfg['train']['seed']}, "
          f"device {results.device}, RecStudio flavour {results.flavour} "
          f"({results.wall_seconds:.0f}s)")
    print(results.table())
    print(f"results: {trainer.layout.results}")
    return 0


def _rank():
    """This process's rank under torchrun (0 otherwise)."""
    return int(os.environ.get('RANK', '0'))


def _one_process(command):
    """Suites, grids and matrices run many runs in one folder; under torchrun only ``run`` is served."""
    from . import distributed
    if distributed.launched():
        raise UserError(f'{command} under torchrun: not supported (torchrun runs one run: run_recstudio.py -m ... '
                        f'-d ...); start {command} without torchrun')


def _set_threads(cfg):
    """The command line uses every core unless ``train.num_threads`` says otherwise (the Python API
    leaves torch's setting alone unless it is configured)."""
    import torch
    torch.set_num_threads(int(cfg['train'].get('num_threads') or os.cpu_count()))


def check_run(cfg):
    """Checks that need the host, before anything is trained (the API's)."""
    from .api import check
    check(cfg)


def grid_main(cfg, known, fixed, top, axes):
    """A flag given as a comma list runs every combination (round 0 trained once) into one folder."""
    _one_process('a grid (an option given as a comma list)')
    from .algorithm import loop
    from .analysis import report, suite as S
    if cfg['augment'] == 'none':
        raise UserError('a grid (an option given as a comma list) needs --augment rsir, reorder or insert')
    ds = loop.dataset_label(cfg['dataset'])
    out = known.output or os.path.join('runs', f"grid-{cfg['model_name']}-{ds}-{cfg['augment']}")
    methods = S.grid_methods(axes, cfg['augment'])
    top = {k: v for k, v in top.items() if k != 'output'}
    summary = S.run_suite({}, methods, [cfg['train']['seed']], out, fixed, top, where='grid', check=check_run,
                          progress=not known.quiet, kind='grid', config_path=known.config, axes=axes)
    print(S.format_summary(summary))
    print(f"report: {report.write_report(out)}")
    return 0


def _multi_run_args(p, argv):
    """Parse a multi-run command: its own options, then run flags shared by every run (no --seed:
    seeds come as a comma list).  Returns (args, flags, seeds or None)."""
    p.add_argument('--output')
    p.add_argument('--quiet', action='store_true')
    a, rest = p.parse_known_args(argv)
    flags = _with_known(*_split_flags(rest))
    if 'train.seed' in flags:
        raise UserError(f'{p.prog}: give seeds with --seeds (a comma list), not --seed')
    seeds = None
    if a.seeds:
        try:
            seeds = [int(x) for x in a.seeds.split(',')]
        except ValueError:
            raise UserError(f'--seeds {a.seeds}: expected a comma list of integers') from None
    return a, flags, seeds


def suite_main(argv):
    p = _Parser(prog='rsir suite', description='Methods x seeds from a suite YAML')
    p.add_argument('file')
    p.add_argument('--seeds', help='comma list overriding the file\'s seeds')
    p.add_argument('--methods', help='comma list: run only these methods now (and base); e.g. in two shells')
    a, flags, seeds_flag = _multi_run_args(p, argv)
    _one_process('rsir suite')
    from .analysis import report, suite as S
    common, methods, seeds, out = S.load_suite(a.file)
    seeds = seeds_flag or seeds
    only = [m.strip() for m in a.methods.split(',') if m.strip()] if a.methods else None
    out = a.output or out or os.path.join('runs', os.path.splitext(os.path.basename(a.file))[0])
    summary = S.run_suite(common, methods, seeds, out, flags, where=a.file, check=check_run, progress=not a.quiet,
                          only=only)
    print(S.format_summary(summary))
    print(f"report: {report.write_report(out)}")
    return 0


def matrix_main(argv):
    p = _Parser(prog='rsir matrix', description='Teacher x student matrix of one RSIR round')
    p.add_argument('-d', '--dataset', required=True)
    p.add_argument('--models', required=True, help='comma list of backbones, e.g. SASRec,CL4SRec,HSTU')
    p.add_argument('--seeds', default='2022')
    p.add_argument('--config')
    a, flags, seeds = _multi_run_args(p, argv)
    _one_process('rsir matrix')
    from . import models as M
    from .algorithm import loop
    from .analysis import report, suite as S
    names = [m.strip() for m in a.models.split(',') if m.strip()]
    for n in names:
        M.resolve(n)                                    # unknown names: one-line error listing the models
    common = C.load_yaml(a.config) if a.config else {}
    out = a.output or os.path.join('runs', f'matrix-{loop.dataset_label(a.dataset)}')
    S.run_matrix(names, seeds, out, dict(common, dataset=a.dataset), flags, {'dataset': a.dataset},
                 check=check_run, progress=not a.quiet)
    print(f"report: {report.write_report(out)}")
    return 0


def report_main(argv):
    p = _Parser(prog='rsir report', description='report.md + plots of an output folder')
    p.add_argument('folder')
    a = p.parse_args(argv)
    from .analysis import report
    print(report.write_report(a.folder))
    return 0


def stats_main(argv):
    p = _Parser(prog='rsir stats', description='Statistics of a dataset')
    p.add_argument('-d', '--dataset', required=True)
    a = p.parse_args(argv)
    import tempfile
    from . import data as D, host
    with tempfile.TemporaryDirectory() as tmp:
        seqs = D.read_dataset(a.dataset, tmp, host.named_dataset_file)
    rows = [[i for i, _ in s] for s in seqs.values()]
    st = D.sequence_stats(rows)
    from .analysis.stats import apen_summary
    st.update(apen_summary(rows))
    for k in ('users', 'items', 'interactions', 'mean_length', 'density', 'sparsity', 'apen', 'apen_reciprocal'):
        v = st[k]
        print(f"{k:>15}: {v:.6f}" if isinstance(v, float) else f"{k:>15}: {v}")
    return 0


def _setup_logging():
    """The plugin's own messages at INFO on stderr; the root logger is left alone (no handler, level
    WARNING), so libraries that log at INFO on import (faiss, imported by the GitHub RecStudio) print
    nothing."""
    log = logging.getLogger('recstudio_rsir')
    if not any(getattr(h, '_rsir', False) for h in log.handlers):
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter('%(message)s'))
        h._rsir = True
        log.addHandler(h)
    log.setLevel(logging.INFO if _rank() == 0 else logging.WARNING)     # torchrun: rank 0 reports
    logging.getLogger('recstudio').setLevel(logging.ERROR)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        commands = {'stats': stats_main, 'suite': suite_main, 'matrix': matrix_main, 'report': report_main}
        if argv and argv[0] in commands:
            code = commands[argv[0]](argv[1:])
        else:
            code = run_main(argv[1:] if argv and argv[0] == 'run' else argv)
        from . import distributed
        distributed.shutdown()          # torchrun: leave the process group before the interpreter exits
        return code
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: re-run the same command to resume', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
