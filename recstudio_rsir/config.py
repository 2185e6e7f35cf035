"""Configuration: defaults < model YAML < ``--config`` YAML < command-line flags (RecStudio's order).

The plugin's config is a dict of groups::

    data:  dataset options (max_seq_len)
    model: the backbone's hyper-parameters (passed to RecStudio's model config, either flavour)
    train: how one model is trained and evaluated (regime, epochs, patience, device, seed, ...)
    rsir:  the self-improving loop and the generator (rounds, m, p, tau, fidelity, ...);
           ``rsir.rounds`` and ``rsir.generate_from`` also drive the heuristic augmentations
    aug:   the heuristic augmentations (``--augment reorder|insert``: copies, ratios, seed)

plus the top-level keys ``model_name``, ``dataset``, ``augment`` and ``output``.

Flags: ``--group.key value`` sets one key; ``--key value`` works when ``key`` belongs to exactly one
group (``--epochs 5``, ``--batch_size 256``, ``--tau 10``); values are parsed as YAML scalars.
"""
import copy
import os
import re

import yaml

from .errors import UserError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

DEFAULTS = {
    'model_name': 'SASRec',
    'dataset': 'embedded',
    'augment': 'none',            # none | rsir | reorder | insert | a registered augmenter
    'plugins': [],                # modules imported first (they may register augmenters or models)
    'output': None,               # default: runs/<model>-<dataset>-<augment>-seed<seed>
    'data': {
        'max_seq_len': 50,
    },
    'model': {},
    'train': {
        'regime': 'user',         # user (one row per user, sampled softmax) | prefix (RecStudio's own)
        'epochs': 200,
        'patience': 10,           # early stopping on validation NDCG@20, in evaluations
        'eval_every': 1,
        'batch_size': 256,
        'eval_batch_size': 256,
        'learning_rate': 0.001,
        'weight_decay': 0.0,
        'num_negatives': 256,     # user regime: sampled-softmax negatives per row
        'negative_count': 1,      # prefix regime: RecStudio's negatives per row
        'seed': 2022,
        'device': 'cpu',
        'num_threads': None,      # default: the number of CPU cores
        'precision': 'fp32',      # fp32 | bf16 (autocast of the training step's forward)
        'compile': False,         # torch.compile the training step
        'save_every_s': 600,      # seconds between resume states saved inside an epoch (0: at epoch ends only)
    },
    'rsir': {
        'rounds': 1,              # K: number of generate-and-retrain rounds after round 0
        'm': 5,                   # trajectories per source sequence
        'p': 0.5,                 # probability that a step's pool is the user's own items
        'tau': 20,                # fidelity rank threshold
        'fidelity': 'on',         # on | off (ablation: accept every step)
        'min_len': 3,
        'max_len': None,          # default: data.max_seq_len
        'decoding': 'greedy',     # greedy | sample (top-k sampling with temperature)
        'top_k': 10,
        'temperature': 1.0,
        'seed_prefix': 'first',   # first | random (random prefix length j in [1, len-1])
        'keep_failed_step': False,
        'generate_from': 'all',   # all | real
        'target_items': 'row',    # row | history: own pool and fidelity targets from the whole source row, or
                                  # from the row without its last item (what the authors' code feeds)
        'dedup': 'all',           # all (against each other and the training rows) | generated (each other only)
        'batch_size': 1024,       # source trajectories per generation batch
        'memory_mb': 512,         # budget for [batch, items] score tensors; the item dim is chunked
        'kv_cache': True,         # encode only the new positions at each step (SASRec-style encoders)
        'popularity_penalty': 0.0,  # pick by score - this x log(1 + training count); fidelity keeps raw scores
        'synthetic_weight': 1.0,  # user regime: loss weight of the augmented (training-only) rows, real rows 1
        'seed': 0,
        'teacher': None,          # backbone that generates (default: the trained backbone)
        'teacher_ckpt': None,
        'teacher_model': None,    # the teacher's model options (default: its model YAML's)
    },
    'aug': {
        'copies': 1,              # augmented copies per source row and round
        'reorder_ratio': 0.2,     # reorder: window = max(2, floor(ratio * n)) items
        'insert_rate': 0.2,       # insert: max(1, floor(rate * n)) items inserted
        'insert_items': 'uniform',  # uniform | popularity: how inserted items are drawn
        'seed': 0,
    },
}

CHOICES = {
    ('aug', 'insert_items'): ('uniform', 'popularity'),
    ('train', 'regime'): ('user', 'prefix'),
    ('train', 'precision'): ('fp32', 'bf16'),
    ('rsir', 'fidelity'): ('on', 'off'),
    ('rsir', 'decoding'): ('greedy', 'sample'),
    ('rsir', 'seed_prefix'): ('first', 'random'),
    ('rsir', 'generate_from'): ('all', 'real'),
    ('rsir', 'target_items'): ('row', 'history'),
    ('rsir', 'dedup'): ('all', 'generated'),
}
TOP_LEVEL = ('model_name', 'dataset', 'augment', 'output', 'plugins')
GROUPS = ('data', 'model', 'train', 'rsir', 'aug')


def deep_update(base, new, where):
    for k, v in (new or {}).items():
        if k in GROUPS:
            if not isinstance(v, dict):
                raise UserError(f'{where}: `{k}` must be a mapping of options')
            base.setdefault(k, {})
            for kk, vv in v.items():
                if k not in ('model',) and kk not in DEFAULTS[k]:
                    raise UserError(f'{where}: unknown option {k}.{kk}; accepted: {", ".join(sorted(DEFAULTS[k]))}')
                base[k][kk] = vv
        elif k in TOP_LEVEL:
            base[k] = v
        else:
            raise UserError(f'{where}: unknown key `{k}`; accepted: {", ".join(TOP_LEVEL + GROUPS)}')
    return base


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as the number YAML 1.2 and every user means: YAML 1.1
    (PyYAML) makes a float only of ``1.0e-3`` and leaves ``1e-3`` a string, which the option checks
    would then refuse."""


_Loader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'''^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                   |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$''', re.X),
    list('-+0123456789.'))


def load_yaml(path):
    if not os.path.exists(path):
        raise UserError(f'--config {path}: no such file')
    try:
        with open(path, encoding='utf-8') as f:
            obj = yaml.load(f, Loader=_Loader)
    except UnicodeDecodeError as e:
        raise UserError(f'{path}: not UTF-8 text (byte {e.start}); a config file is YAML text') from None
    except IsADirectoryError:
        raise UserError(f'{path}: is a folder; expected a YAML file') from None
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        line = f':{mark.line + 1}' if mark is not None else ''
        raise UserError(f'{path}{line}: invalid YAML ({getattr(e, "problem", e)})') from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise UserError(f'{path}: a config file must be a mapping of groups (data/model/train/rsir)')
    return obj


def uses_teacher(cfg):
    """True when another backbone (or a given checkpoint) generates the synthetic data."""
    r = cfg['rsir']
    return cfg['augment'] != 'none' and (bool(r.get('teacher_ckpt')) or
                                         (r.get('teacher') or cfg['model_name']).lower() != cfg['model_name'].lower())


def teacher_config(cfg):
    """The config of the teacher backbone: the student's data/train/rsir groups, the teacher's own
    model defaults (its model YAML), no augmentation."""
    t = copy.deepcopy(cfg)
    name = cfg['rsir']['teacher'] or cfg['model_name']
    t['model_name'] = name
    if cfg['rsir'].get('teacher_model') is not None:
        t['model'] = copy.deepcopy(cfg['rsir']['teacher_model'])
    elif name.lower() != cfg['model_name'].lower():
        t['model'] = copy.deepcopy(model_yaml(name).get('model', {}))
    else:
        t['model'] = copy.deepcopy(cfg['model'])
    t['augment'] = 'none'
    return t


def model_yaml(name):
    """The plugin's default YAML for a model name, if it has one (``model_configs/<name>.yaml``)."""
    path = os.path.join(PACKAGE_DIR, 'model_configs', f'{name.lower()}.yaml')
    return load_yaml(path) if os.path.exists(path) else {}


def parse_value(text):
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def flag_target(key):
    """Map a flag name to (group, key); raises UserError with the accepted names."""
    if '.' in key:
        group, k = key.split('.', 1)
        if group not in GROUPS:
            raise UserError(f'--{key}: unknown group `{group}`; accepted: {", ".join(GROUPS)}')
        if group != 'model' and k not in DEFAULTS[group]:
            raise UserError(f'--{key}: unknown option; accepted {group} options: {", ".join(sorted(DEFAULTS[group]))}')
        return group, k
    owners = [g for g in ('train', 'data', 'rsir', 'aug') if key in DEFAULTS[g]]
    if len(owners) == 1:
        return owners[0], key
    if len(owners) > 1:
        return owners[0], key  # train wins (e.g. --seed, --batch_size): use --rsir.<key> for the other
    return 'model', key        # anything else is a backbone hyper-parameter (checked against the host)


def resolve(model_name=None, config_path=None, flags=None, top=None, layers=()):
    """Merge defaults < model YAML < config file < ``layers`` < flags. ``top`` sets top-level keys
    (-m/-d/...); ``layers`` is a list of (where, mapping) applied in order after the file (a suite's
    common block and one method's overrides)."""
    cfg = copy.deepcopy(DEFAULTS)
    file_cfg = load_yaml(config_path) if config_path else {}
    name = (top or {}).get('model_name') or model_name
    for _, layer in reversed(list(layers)):
        name = name or layer.get('model_name')
    name = name or file_cfg.get('model_name') or cfg['model_name']
    deep_update(cfg, model_yaml(name), f'model YAML for {name}')
    deep_update(cfg, file_cfg, config_path or '')
    for where, layer in layers:
        deep_update(cfg, layer, where)
    for key, value in (flags or {}).items():
        g, k = flag_target(key)
        cfg[g][k] = value
    for k, v in (top or {}).items():
        if v is not None:
            cfg[k] = v
    cfg['model_name'] = name
    validate(cfg)
    return cfg


def validate(cfg):
    from .algorithm.augmenters import augmenter_names, import_plugins
    plugins = cfg.get('plugins') or []
    if isinstance(plugins, str):
        plugins = cfg['plugins'] = [p.strip() for p in plugins.split(',') if p.strip()]
    _check(isinstance(plugins, list) and all(isinstance(p, str) for p in plugins), 'plugins', plugins,
           'a list of module names')
    import_plugins(plugins)
    accepted = ['none'] + augmenter_names()
    a = cfg['augment']
    parts = [x.strip() for x in a.split('+')] if isinstance(a, str) else [a]
    if not isinstance(a, str) or (a not in accepted and (len(parts) < 2 or len(set(parts)) < len(parts) or
                                                          any(x not in accepted[1:] for x in parts))):
        raise UserError(f"augment: {a!r} is not one of {', '.join(accepted)}, or two or more of them joined by + "
                        '(e.g. rsir+reorder); a module that registers augmenters is loaded with --plugins MODULE')
    for path, allowed in CHOICES.items():
        parent = cfg
        for p in path[:-1]:
            parent = parent[p]
        v = parent[path[-1]]
        if isinstance(v, bool) and 'on' in allowed:    # YAML 1.1 reads a bare on / off as true / false
            v = parent[path[-1]] = 'on' if v else 'off'
        if v not in allowed:
            raise UserError(f'{".".join(path)}: {v!r} is not one of {", ".join(allowed)}')
    r, t = cfg['rsir'], cfg['train']
    _check(_is_number(r['p']) and 0.0 <= r['p'] <= 1.0, 'rsir.p', r['p'], 'a probability in [0, 1]')
    _check(_is_int(r['m']) and r['m'] >= 1, 'rsir.m', r['m'], 'an integer >= 1')
    _check(_is_int(r['rounds']) and r['rounds'] >= 0, 'rsir.rounds', r['rounds'], 'an integer >= 0')
    _check(r['tau'] in ('inf', float('inf')) or (_is_int(r['tau']) and r['tau'] >= 1), 'rsir.tau', r['tau'],
           'an integer >= 1 or inf')
    _check(_is_int(r['min_len']) and r['min_len'] >= 2, 'rsir.min_len', r['min_len'], 'an integer >= 2')
    _check(_is_int(r['top_k']) and r['top_k'] >= 1, 'rsir.top_k', r['top_k'], 'an integer >= 1')
    _check(_is_number(r['temperature']) and r['temperature'] > 0, 'rsir.temperature', r['temperature'], 'a number > 0')
    _check(r['max_len'] is None or (_is_int(r['max_len']) and r['max_len'] >= 2), 'rsir.max_len', r['max_len'],
           'null or an integer >= 2')
    _check(_is_int(r['batch_size']) and r['batch_size'] >= 1, 'rsir.batch_size', r['batch_size'], 'an integer >= 1')
    _check(_is_number(r['memory_mb']) and r['memory_mb'] > 0, 'rsir.memory_mb', r['memory_mb'], 'a number > 0')
    _check(_is_int(r['seed']), 'rsir.seed', r['seed'], 'an integer')
    _check(isinstance(r['keep_failed_step'], bool), 'rsir.keep_failed_step', r['keep_failed_step'], 'true or false')
    _check(isinstance(r['kv_cache'], bool), 'rsir.kv_cache', r['kv_cache'], 'true or false')
    _check(_is_number(r['popularity_penalty']) and 0 <= r['popularity_penalty'] < float('inf'),
           'rsir.popularity_penalty', r['popularity_penalty'], 'a finite number >= 0')
    for key in ('teacher', 'teacher_ckpt'):
        _check(r[key] is None or isinstance(r[key], str), f'rsir.{key}', r[key], 'null or a string')
    _check(_is_int(t['epochs']) and t['epochs'] >= 1, 'train.epochs', t['epochs'],
           'an integer >= 1 (0 would report an untrained model as a result)')
    _check(_is_number(t['learning_rate']) and t['learning_rate'] > 0, 'train.learning_rate', t['learning_rate'],
           'a number > 0')
    _check(_is_number(t['weight_decay']) and t['weight_decay'] >= 0, 'train.weight_decay', t['weight_decay'],
           'a number >= 0')
    for key in ('eval_every', 'eval_batch_size', 'num_negatives', 'negative_count'):
        _check(_is_int(t[key]) and t[key] >= 1, f'train.{key}', t[key], 'an integer >= 1')
    _check(_is_int(t['seed']), 'train.seed', t['seed'], 'an integer')
    _check(t['num_threads'] is None or (_is_int(t['num_threads']) and t['num_threads'] >= 1), 'train.num_threads',
           t['num_threads'], 'null or an integer >= 1')
    _check(_is_int(t['batch_size']) and t['batch_size'] >= 1, 'train.batch_size', t['batch_size'], 'an integer >= 1')
    _check(_is_int(t['patience']) and t['patience'] >= 1, 'train.patience', t['patience'], 'an integer >= 1')
    _check(isinstance(t['compile'], bool), 'train.compile', t['compile'], 'true or false')
    _check(_is_number(t['save_every_s']) and 0 <= t['save_every_s'] < float('inf'), 'train.save_every_s',
           t['save_every_s'], 'a finite number of seconds >= 0 (0: resume states at epoch ends only)')
    _check(_is_number(r['synthetic_weight']) and 0 <= r['synthetic_weight'] < float('inf'), 'rsir.synthetic_weight',
           r['synthetic_weight'], 'a finite number >= 0')
    _check(r['synthetic_weight'] == 1 or t['regime'] == 'user', 'rsir.synthetic_weight', r['synthetic_weight'],
           '1 with train.regime prefix (RecStudio\'s own loss takes no row weights); other weights need regime user')
    _check(_is_int(cfg['data']['max_seq_len']) and cfg['data']['max_seq_len'] >= 2, 'data.max_seq_len',
           cfg['data']['max_seq_len'], 'an integer >= 2')
    _check(r.get('teacher_model') is None or isinstance(r['teacher_model'], dict), 'rsir.teacher_model',
           r.get('teacher_model'), 'a mapping of the teacher backbone\'s model options')
    a = cfg['aug']
    _check(_is_int(a['copies']) and a['copies'] >= 1, 'aug.copies', a['copies'], 'an integer >= 1')
    _check(_is_number(a['reorder_ratio']) and 0 < a['reorder_ratio'] <= 1, 'aug.reorder_ratio', a['reorder_ratio'],
           'a number in (0, 1]')
    _check(_is_number(a['insert_rate']) and a['insert_rate'] > 0, 'aug.insert_rate', a['insert_rate'], 'a number > 0')
    _check(_is_int(a['seed']), 'aug.seed', a['seed'], 'an integer')
    _check(isinstance(cfg['dataset'], str) and cfg['dataset'] != '', 'dataset', cfg['dataset'],
           'a dataset (embedded, a file, a folder or a RecStudio dataset name)')
    _check(isinstance(cfg['model_name'], str), 'model_name', cfg['model_name'], 'a model name')
    _check(cfg['output'] is None or isinstance(cfg['output'], str), 'output', cfg['output'], 'a folder path')
    _check(isinstance(cfg['model'], dict), 'model', cfg['model'], 'a mapping of backbone options')
    dev = str(t['device'])
    _check(dev == 'cpu' or dev == 'cuda' or dev.startswith('cuda:'), 'train.device', dev, 'cpu, cuda or cuda:N')


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(ok, name, value, what):
    if not ok:
        raise UserError(f'{name}: {value!r} is not valid; expected {what}')


def rounds_asked(cfg):
    """The rounds after round 0 that a run of ``cfg`` makes: ``rsir.rounds``, none without augmentation."""
    return int(cfg['rsir']['rounds']) if cfg['augment'] != 'none' else 0


def tau_value(cfg_rsir):
    """tau as a number; fidelity off means every step is accepted (tau = inf)."""
    if cfg_rsir['fidelity'] == 'off' or cfg_rsir['tau'] in ('inf', float('inf')):
        return float('inf')
    return int(cfg_rsir['tau'])


def dump(cfg):
    return yaml.safe_dump(cfg, sort_keys=False)
