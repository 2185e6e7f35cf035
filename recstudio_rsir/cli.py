"""Command line: ``run_recstudio.py`` / ``rsir run`` trains (and self-improves) a model; ``rsir stats``
prints dataset statistics.

    python run_recstudio.py -m SASRec -d embedded --augment rsir --rsir.rounds 2 --epochs 20
    rsir stats -d ../shared/data/seqrec/Beauty.txt.gz
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


def _split_flags(argv):
    """Separate known options from --key value pairs."""
    p = argparse.ArgumentParser(prog='run_recstudio.py', usage=USAGE, add_help=True)
    p.add_argument('-m', '--model', dest='model_name')
    p.add_argument('-d', '--dataset')
    p.add_argument('--augment')
    p.add_argument('--config')
    p.add_argument('--device')
    p.add_argument('--seed', type=int)
    p.add_argument('--output')
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


def run_main(argv):
    known, flags = _split_flags(argv)
    if known.device is not None:
        flags['train.device'] = known.device
    if known.seed is not None:
        flags['train.seed'] = known.seed
    top = {'model_name': known.model_name, 'dataset': known.dataset, 'augment': known.augment,
           'output': known.output}
    cfg = C.resolve(config_path=known.config, flags=flags, top=top)
    from . import host, loop
    host.apply_shims()
    _check_model_keys(cfg)
    loop.check_teacher(cfg)
    results = loop.run(cfg, progress=not known.quiet)
    print()
    print(f"{cfg['model_name']} on {results['dataset']}, augment={cfg['augment']}, seed {cfg['train']['seed']}, "
          f"device {results['device']}, RecStudio flavour {results['flavour']} "
          f"({results['wall_seconds']:.0f}s)")
    print(loop.format_table(results))
    print(f"results: {os.path.join(cfg['output'], 'results.json')}")
    return 0


def _check_model_keys(cfg):
    """Backbone options must exist in the backbone's host config (typos get a clear error)."""
    from . import host, models
    _, conf = models.resolve(cfg['model_name'])
    known = set(conf.get('model', {})) if host.is_nested(conf) else set(conf)
    known |= {'embed_dim'} | set(C.model_yaml(cfg['model_name']).get('model', {}))   # plugin models' own keys
    bad = [k for k in cfg['model'] if k not in known]
    if bad:
        raise UserError(f'--{bad[0]}: unknown option for {cfg["model_name"]}; backbone options: '
                        f'{", ".join(sorted(known))}; plugin options: see --help')


def stats_main(argv):
    p = argparse.ArgumentParser(prog='rsir stats', description='Statistics of a dataset')
    p.add_argument('-d', '--dataset', required=True)
    a = p.parse_args(argv)
    from . import data as D
    spec = a.dataset
    if spec.startswith('embedded'):
        seed = int(spec.split(':', 1)[1]) if ':' in spec else 0
        seqs = D.make_embedded(seed)
    elif os.path.isdir(spec):
        name, folder, _ = D.resolve_dataset(spec, '/tmp')
        seqs = D.read_table_file_atomic(os.path.join(folder, name + '.inter'))
    elif spec.endswith(('.csv', '.tsv', '.csv.gz', '.tsv.gz')):
        seqs = D.read_table_file(spec)
    else:
        seqs = D.read_sequence_file(spec)
    st = D.sequence_stats([[i for i, _ in s] for s in seqs.values()])
    st.pop('items_seen')
    st['users'] = st.pop('sequences')
    for k in ('users', 'items', 'interactions', 'mean_length', 'density', 'sparsity'):
        v = st[k]
        print(f'{k:>13}: {v:.6f}' if isinstance(v, float) else f'{k:>13}: {v}')
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    logging.getLogger('recstudio').setLevel(logging.ERROR)
    try:
        if argv and argv[0] == 'stats':
            return stats_main(argv[1:])
        if argv and argv[0] == 'run':
            argv = argv[1:]
        return run_main(argv)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: re-run the same command to resume', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
