"""The host layer: everything that knows which RecStudio is installed lives here, and only here.

Two flavours exist (see ``docs/host.md``):

* ``pypi``   -- ``recstudio==0.0.2a1`` from PyPI (2022): one flat config dict.
* ``source`` -- the GitHub source of ustcml/RecStudio (2024): config groups ``data/model/train/eval``.

They are told apart by feature (both install as dist version 0.0.2a1): the PyPI wheel has
``recstudio.data.dataset.MFDataset`` and no ``TripletDataset``.

The rest of the package calls only these functions:

=========================  =====================================================================
``flavour()``              'pypi' or 'source'
``environment(device)``    what a model was trained with: versions, CPU/GPU, threads (a dict)
``apply_shims()``          the minimal fixes for Python 3.11 / missing dgl (idempotent)
``model_class(name)``      (class, host default config) -- plugin registry first, then RecStudio
``load_dataset(...)``      a pristine, loaded-but-unbuilt RecStudio dataset
``build(...)``             train/val/test, with synthetic training-only rows appended
``construct(...)``         a model whose modules exist (``_init_model`` done), on a device
``encode_last(model, b)``  query vectors ``[B, D]`` (eval mode)
``encode_all(model, b)``   per-position vectors ``[B, L, D]`` (training, every position)
``item_scores(model, q)``  scores ``[B, hi - lo]`` of item ids lo..hi-1, id 0 (padding) = -inf
=========================  =====================================================================
"""
import copy
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import types

import torch

from .errors import UserError

log = logging.getLogger('recstudio_rsir')

_SHIMS_APPLIED = False

# Keys of the plugin's flat ``train``/``model`` groups that RecStudio itself reads, by flavour group.
HOST_TRAIN_KEYS = ('learning_rate', 'weight_decay', 'learner', 'scheduler', 'epochs', 'batch_size',
                   'eval_batch_size', 'seed', 'num_threads', 'early_stop_patience')


# ----------------------------------------------------------------------------- flavour and shims

def _import_recstudio():
    try:
        import recstudio  # noqa: F401
    except ImportError as e:
        raise UserError('RecStudio is not installed: run `make install` (pip install --no-deps '
                        'recstudio==0.0.2a1) or install the GitHub source') from e
    return sys.modules['recstudio']


def flavour():
    """'pypi' (flat config, 0.0.2a1 wheel) or 'source' (nested config, GitHub source)."""
    apply_shims()
    ds = importlib.import_module('recstudio.data.dataset')
    return 'source' if hasattr(ds, 'TripletDataset') else 'pypi'


def environment(device) -> dict:
    """What a model is trained with, recorded next to its metrics so that runs on different machines
    can be told apart: the plugin's, RecStudio's (flavour and version), Python's and torch's versions,
    the CPU model and the instruction set torch dispatches to (``cpu_capability``: CPU float results
    can differ in the last bits between, e.g., AVX2 and AVX512), torch's intra-op threads, and the
    GPU's name and CUDA version on a CUDA device (else None).  What cannot be read is None."""
    import platform
    from importlib import metadata
    from . import __version__
    try:
        rs_version = metadata.version('recstudio')
    except metadata.PackageNotFoundError:
        rs_version = None
    cpu = None
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            cpu = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), None)
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    device = torch.device(device)
    cuda = device.type == 'cuda' and torch.cuda.is_available()
    return {'rsir': __version__, 'recstudio': f'{flavour()} {rs_version}', 'python': platform.python_version(),
            'torch': torch.__version__, 'device': str(device), 'cpu': cpu or platform.processor() or None,
            'cpu_capability': capability, 'threads': torch.get_num_threads(),
            'gpu': torch.cuda.get_device_name(device) if cuda else None,
            'cuda': torch.version.cuda if cuda else None}


def is_nested(config):
    """True for a source-flavour (nested) config dict."""
    return isinstance(config.get('train'), dict) and isinstance(config.get('model'), dict)


_DGL_MESSAGE = ('this model needs the `dgl` package (graph models); it is not installed. Install dgl for '
                'your torch version, or use a sequential model (SASRec, CL4SRec, HSTU, GRU4Rec, ...)')


class _MissingDGLName:
    """Any name looked up in the placeholder ``dgl``: fine in annotations, an error when used."""

    def __init__(self, path):
        self._path = path

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _MissingDGLName(f'{self._path}.{name}')

    def __call__(self, *args, **kwargs):
        raise UserError(f'{self._path}: {_DGL_MESSAGE}')


class _MissingDGL(types.ModuleType):
    """Stands in for ``dgl`` so that ``recstudio.model.module`` imports without it.

    RecStudio imports dgl for every model (``graphmodule.py``: ``import dgl``); sequential models never
    use it.  Calling anything in it raises a clear error instead of an AttributeError deep inside a
    graph model.
    """

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _MissingDGLName(f'{self.__name__}.{name}')


def apply_shims():
    """Apply, once, only the shims the installed stack needs.

    * Python 3.11 removed ``inspect.getargspec``; the PyPI flavour's training loop calls it
      (``AttributeError: module 'inspect' has no attribute 'getargspec'``) -> alias to getfullargspec.
    * ``recstudio/model/module/graphmodule.py`` does ``import dgl`` for every model; without dgl
      (no Python 3.11 wheel of the pinned dgl-cu102) nothing imports -> placeholder modules that fail
      clearly when a graph model actually touches dgl.
    * pandas >= 3 makes ``_fill_nan`` a silent no-op and the dataset build fails with "cannot convert
      to int64 ... missing values" -> refuse with a clear message (the plugin pins pandas<3).
    """
    global _SHIMS_APPLIED
    if _SHIMS_APPLIED:
        return
    if not hasattr(inspect, 'getargspec'):
        inspect.getargspec = inspect.getfullargspec
    if 'dgl' not in sys.modules and importlib.util.find_spec('dgl') is None:
        for name in ('dgl', 'dgl.nn', 'dgl.nn.pytorch', 'dgl.nn.pytorch.conv', 'dgl.function'):
            mod = _MissingDGL(name)
            mod.__path__ = []  # a package, so that submodule imports resolve to the entries above
            sys.modules[name] = mod
            if '.' in name:  # `import dgl.nn.pytorch.conv as x` walks the attributes
                parent, child = name.rsplit('.', 1)
                setattr(sys.modules[parent], child, mod)
    import pandas
    if int(pandas.__version__.split('.')[0]) >= 3:
        raise UserError(f'pandas {pandas.__version__} breaks RecStudio\'s data layer (fillna inplace is a '
                        'no-op on pandas 3); install pandas<3 (pip install "pandas<3")')
    _import_recstudio()
    logging.getLogger('recstudio').setLevel(logging.ERROR)
    _SHIMS_APPLIED = True


# ----------------------------------------------------------------------------- models

def host_model_names():
    """Names of RecStudio's own sequential models (for error messages)."""
    apply_shims()
    import recstudio.model.seq as seq
    folder = os.path.dirname(seq.__file__)
    names = []
    for f in sorted(os.listdir(folder)):
        if f.endswith('.py') and not f.startswith('_'):
            mod = importlib.import_module(f'recstudio.model.seq.{f[:-3]}')
            names += [n for n, c in vars(mod).items()
                      if isinstance(c, type) and n.lower() == f[:-3] and hasattr(c, '_get_dataset_class')]
    return names


def host_model_class(name):
    """(class, host default config) from RecStudio's own ``get_model``."""
    apply_shims()
    from recstudio.utils import get_model
    try:
        return get_model(name)
    except (ValueError, AttributeError, ModuleNotFoundError):
        return None


def base_model_config():
    """The config RecStudio gives a sequential model before its own YAML: ``basemodel.yaml`` updated
    by ``seq/config/all.yaml`` (as ``get_model`` builds it), in the installed flavour's shape.  Plugin
    models start from it; their own defaults come from the plugin's model YAML."""
    apply_shims()
    import recstudio.model as rm
    from recstudio.utils.utils import parser_yaml
    root = os.path.dirname(rm.__file__)
    conf = parser_yaml(os.path.join(root, 'basemodel', 'basemodel.yaml'))
    extra = os.path.join(root, 'seq', 'config', 'all.yaml')
    if os.path.exists(extra):
        for k, v in (parser_yaml(extra) or {}).items():
            if isinstance(v, dict) and isinstance(conf.get(k), dict):
                conf[k].update(v)
            else:
                conf[k] = v
    return conf


def auxiliary_loss(model, batch):
    """A model's extra training term in the user regime, or None.

    Plugin models expose ``contrastive_loss(batch)`` (CL4SRec, weight included); the GitHub
    source's CL4SRec keeps its term in ``augmentation_model(batch, query_encoder)['cl_loss']``
    weighted by ``model.cl_weight``.
    """
    if hasattr(model, 'contrastive_loss'):
        return model.contrastive_loss(batch)
    if hasattr(model, 'augmentation_model'):
        w = config_value(model.config, 'cl_weight', 'model', default=0.1)
        return float(w) * model.augmentation_model(batch, model.query_encoder)['cl_loss']
    return None


def merge_host_config(host_conf, model_group, train_group, max_seq_len):
    """The plugin's ``model``/``train`` groups written into a host config of either shape.

    Flat (pypi): every key at top level.  Nested (source): model keys under ``model``, training keys
    under ``train``; ``embed_dim`` lives in ``model`` there.  The device is always left to the plugin
    (``gpu: None``): the model is moved by :func:`construct`.
    """
    conf = copy.deepcopy(host_conf)
    train = {k: train_group[k] for k in HOST_TRAIN_KEYS if k in train_group}
    if train_group.get('patience') is not None:
        train['early_stop_patience'] = train_group['patience']
    if is_nested(conf):
        conf['model'].update(model_group)
        conf['train'].update(train)
        conf['train']['gpu'] = None
        conf.setdefault('data', {})['max_seq_len'] = max_seq_len
    else:
        conf.update(model_group)
        conf.update(train)
        conf['gpu'] = None
        conf['max_seq_len'] = max_seq_len
    return conf


def model_option_keys(config):
    """The model option names of a host config of either shape."""
    return list(model_options(config))


def model_options(config):
    """The model options (name -> default value) of a host config of either shape."""
    return dict(config.get('model', {}) if is_nested(config) else config)


def set_model_option(config, key, value):
    """Set a model option in a host config of either shape (in place)."""
    if is_nested(config):
        config['model'][key] = value
    else:
        config[key] = value


def dataset_base_class(regime, model_cls):
    """RecStudio's dataset class for a training regime: one row per user (``SeqToSeqDataset``) or
    the model's own (one row per prefix for SASRec)."""
    apply_shims()
    import recstudio.data.dataset as rds
    return rds.SeqToSeqDataset if regime == 'user' else model_cls._get_dataset_class()


def config_value(config, key, group=None, default=None):
    """Read ``key`` from a host config of either shape (``group`` names the nested group);
    ``default`` when it is absent or null."""
    value = config.get(key)
    if is_nested(config):
        if group is not None and key in config.get(group, {}):
            value = config[group][key]
        else:
            for g in ('model', 'train', 'eval', 'data'):
                if key in config.get(g, {}):
                    value = config[g][key]
                    break
    return default if value is None else value


def construct(model_cls, host_conf, train_data, device):
    """Instantiate a RecStudio model and create its modules without starting the host's fit().

    The host's ``fit`` builds the modules in ``_init_model(train_data)`` and initialises them in
    ``_init_parameter()``; we call the same two hooks, then move the model to ``device``.
    Note that RecStudio re-seeds every global RNG from the config seed here.
    """
    apply_shims()
    model = model_cls(host_conf)
    model._init_model(train_data)
    model._init_parameter()
    model.to(device)
    return model


# ----------------------------------------------------------------------------- datasets

def dataset_config(name, folder, max_seq_len):
    """Dataset config for the plugin's converted atomic file ``folder/<name>.inter`` (columns
    user_id, item_id, timestamp), valid for both flavours.  No RecStudio cache is written or read
    (``save_cache: False``): RecStudio's cache is a pickle."""
    apply_shims()
    from recstudio.utils.utils import parser_yaml
    import recstudio.data as rdata
    conf = parser_yaml(os.path.join(os.path.dirname(rdata.__file__), 'config', 'all.yaml'))
    conf.update({
        'url': folder, 'inter_feat_name': f'{name}.inter',
        'inter_feat_field': ['user_id:token', 'item_id:token', 'timestamp:float'],
        'inter_feat_header': 0, 'rating_field': None, 'user_feat_name': None, 'item_feat_name': None,
        'network_feat_name': None, 'field_separator': '\t', 'min_user_inter': 0, 'min_item_inter': 0,
        'float_field_preprocess': None, 'save_cache': False,
    })
    conf['max_seq_len'] = int(max_seq_len)
    return conf


def recstudio_dataset_names():
    """Dataset names RecStudio has a config for (``recstudio/data/config/<name>.yaml``)."""
    apply_shims()
    import recstudio.data as rdata
    folder = os.path.join(os.path.dirname(rdata.__file__), 'config')
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith('.yaml') and f != 'all.yaml')


def named_dataset_file(name, cache_dir):
    """The ``.inter`` file of RecStudio dataset ``name`` and its ``inter_feat_field`` list.

    The source flavour ships some (``recstudio/dataset_demo/ml-100k``, its config's ``url:
    recstudio:...``); others are downloaded by RecStudio's own ``download_dataset`` into
    ``cache_dir/<name>``.  When neither gives the file (the PyPI wheel ships no demo data; offline),
    a one-line error says where to put it.
    """
    apply_shims()
    import recstudio
    import recstudio.data as rdata
    from recstudio.utils.utils import parser_yaml
    names = recstudio_dataset_names()
    if name not in names:
        raise UserError(f'-d {name}: no such file or folder, and not a RecStudio dataset name; accepted: '
                        f'embedded[:SEED], a sequence file (.txt/.gz), a .csv/.tsv file, a folder holding one '
                        f'<name>.inter file, or one of {", ".join(names)}')
    conf = parser_yaml(os.path.join(os.path.dirname(rdata.__file__), 'config', f'{name}.yaml'))
    inter, url = conf.get('inter_feat_name'), str(conf.get('url') or '')
    if url.startswith('recstudio:'):
        folder = os.path.join(os.path.dirname(recstudio.__file__), url.split(':', 1)[1])
        where = f'the installed RecStudio ({flavour()} flavour) does not ship {url.split(":", 1)[1]}'
    else:
        folder = os.path.join(cache_dir, name)
        where = f'RecStudio could not download it from {url or "(no url in its config)"}'
        if inter and not os.path.isfile(os.path.join(folder, inter)) and url.startswith('http'):
            from recstudio.utils.utils import download_dataset
            try:
                download_dataset(url, name, folder)        # RecStudio's own download (prints on failure)
            except Exception:                              # noqa: BLE001 - any failure means "not there"
                pass
    path = os.path.join(folder, inter or f'{name}.inter')
    if not inter or not os.path.isfile(path):
        raise UserError(f'-d {name}: {where}; put its atomic file {inter or name + ".inter"} (tab-separated, header '
                        'user_id:token item_id:token ... timestamp:float) in a folder and pass -d FOLDER')
    return path, conf.get('inter_feat_field')


def load_dataset(dataset_cls, name, config, cache_dir=None):
    """Load a dataset without building splits.

    RecStudio first looks for a pickled cache under its cache folder and unpickles it when present;
    a shared run folder could carry a crafted one.  So the lookup is pointed at a fresh empty
    temporary folder (removed afterwards) and ``save_cache`` is off: no cache is ever read or written.
    ``cache_dir`` is accepted for compatibility and not used.
    """
    apply_shims()
    import shutil
    import tempfile
    import recstudio.utils.utils as uu
    old = uu.check_valid_dataset.__defaults__
    empty = tempfile.mkdtemp(prefix='rsir-nocache-')
    uu.check_valid_dataset.__defaults__ = (empty,)
    try:
        return dataset_cls(name=name, config=dict(config, save_cache=False))
    finally:
        uu.check_valid_dataset.__defaults__ = old
        shutil.rmtree(empty, ignore_errors=True)


def training_only_class(base_cls):
    """A subclass of ``base_cls`` whose rows for users ``>= syn_uid_start`` are training-only.

    Every position of a synthetic user goes to the training split; none reaches validation or test.
    """
    cache = training_only_class.__dict__.setdefault('_cache', {})
    if base_cls in cache:
        return cache[base_cls]

    def _get_data_idx(self, splits):
        start = getattr(self, 'syn_uid_start', None)
        if start is None:
            return base_cls._get_data_idx(self, splits)
        sp, uids = splits
        sp = sp.copy()
        uid_arr = uids.to_numpy() if hasattr(uids, 'to_numpy') else uids
        syn = uid_arr >= start
        sp[syn, 1:] = sp[syn, -1:]            # train covers the whole synthetic sequence
        out = base_cls._get_data_idx(self, (sp, uids))
        for k in range(1, len(out)):          # no synthetic row in validation or test
            part = out[k]
            if part.dim() > 1 and len(part):
                out[k] = part[part[:, 0] < start]
        return out

    cls = type(f'TrainOnly{base_cls.__name__}', (base_cls,), {'_get_data_idx': _get_data_idx})
    cache[base_cls] = cls
    return cls


def user_sequences(ds):
    """Per-user mapped item-id lists from a loaded (unbuilt) dataset, in user-id order.

    Returns (uids, seqs): uids are the mapped user ids 1..U, seqs[k] the items of uids[k] in time order.
    """
    inter = ds.inter_feat
    users = inter[ds.fuid].to_numpy().astype('int64')
    items = inter[ds.fiid].to_numpy().astype('int64')
    uids, seqs = [], []
    if len(users) == 0:
        return uids, seqs
    cut = [0] + [i for i in range(1, len(users)) if users[i] != users[i - 1]] + [len(users)]
    for a, b in zip(cut[:-1], cut[1:]):
        uids.append(int(users[a]))
        seqs.append(items[a:b].tolist())
    return uids, seqs


def append_sequences(ds, sequences):
    """Append synthetic sequences (lists of mapped item ids) as new users to an unbuilt dataset.

    Each sequence becomes one new user with a fresh token ``syn<k>`` and id ``num_users + k``;
    timestamps increase along the sequence.  Returns the first synthetic user id.
    """
    import numpy as np
    import pandas as pd
    start = ds.num_users
    if not sequences:
        ds.syn_uid_start = start
        return start
    lens = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    uid = np.repeat(np.arange(start, start + len(sequences), dtype=np.int64), lens)
    item = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    t = np.concatenate([np.arange(n, dtype=np.float64) for n in lens])
    rows = {c: None for c in ds.inter_feat.columns}
    rows[ds.fuid] = uid
    rows[ds.fiid] = item
    rows[ds.frating] = np.ones(len(uid))
    if ds.ftime in rows:
        rows[ds.ftime] = t
    extra = pd.DataFrame(rows)[list(ds.inter_feat.columns)]
    for c in (ds.fuid, ds.fiid):
        extra[c] = extra[c].astype(ds.inter_feat[c].dtype)
    ds.inter_feat = pd.concat([ds.inter_feat, extra], ignore_index=True)
    new_tokens = np.array([f'syn{k}' for k in range(len(sequences))], dtype=object)
    ds.field2tokens[ds.fuid] = np.concatenate([np.asarray(ds.field2tokens[ds.fuid], dtype=object), new_tokens])
    tok2idx = dict(ds.field2token2idx[ds.fuid])
    tok2idx.update({tok: start + k for k, tok in enumerate(new_tokens)})
    ds.field2token2idx[ds.fuid] = tok2idx
    pad = pd.DataFrame({ds.fuid: np.arange(start, start + len(sequences))})
    for c in ds.user_feat.columns:
        if c != ds.fuid:
            pad[c] = 0
    pad[ds.fuid] = pad[ds.fuid].astype(ds.user_feat[ds.fuid].dtype)
    ds.user_feat = pd.concat([ds.user_feat, pad[list(ds.user_feat.columns)]], ignore_index=True)
    ds.syn_uid_start = start
    return start


def build(pristine, synthetic=()):
    """Build train/val/test from a deep copy of ``pristine`` with ``synthetic`` training-only rows.

    ``pristine`` must be loaded with a class from :func:`training_only_class`; it is never modified
    (RecStudio's ``build`` runs once per object and ``fit`` deletes columns from shared tables).
    """
    ds = copy.deepcopy(pristine)
    append_sequences(ds, list(synthetic))
    return ds.build(split_ratio=2, rep=True, train_rep=True)


# ----------------------------------------------------------------------------- encoding and scoring

def encode_last(model, batch):
    """Query vectors ``[B, D]`` for a batch with ``in_<item>`` ``[B, L]`` and ``seqlen`` ``[B]``."""
    return model.query_encoder(model._get_query_feat(batch))


def encode_all(model, batch):
    """Per-position outputs ``[B, L, D]`` (model in training mode), for every-position training.

    Source flavour and plugin models: ``query_encoder(feat, need_pooling=False)``; PyPI SASRec-like
    encoders: the ``_return_full_seq_training`` switch.
    """
    enc = model.query_encoder
    feat = model._get_query_feat(batch)
    if 'need_pooling' in inspect.signature(enc.forward).parameters:
        return enc(feat, need_pooling=False)
    if hasattr(enc, '_return_full_seq_training'):
        old = enc._return_full_seq_training
        enc._return_full_seq_training = True
        try:
            out = enc(feat)
        finally:
            enc._return_full_seq_training = old
        if out.dim() == 3:
            return out
    raise UserError(f'{type(model).__name__}: its query encoder cannot return every position; '
                    'use train.regime: prefix for this model')


def item_vectors(model, num_items):
    """Item vectors ``[num_items, D]`` whose row i is item id i: row 0 (padding) is zeros, extra
    rows of the host's table (such as a mask token) are cut off."""
    v = model._get_item_vector()[: num_items - 1]
    return torch.cat([v.new_zeros(1, v.shape[1]), v])


def item_scores(model, query, num_items, item_vecs=None, lo=0, hi=None):
    """Scores ``[B, hi - lo]`` of item ids lo..hi-1 for queries ``[B, D]``; id 0 (padding) is -inf.

    ``item_vecs``: the output of :func:`item_vectors` (computed when omitted).  RecStudio's
    scorers read ``query.size(0) == items.size(0)`` as "one item per query" (the training path),
    so when the batch happens to have as many rows as the item range, the last row is scored
    separately.
    """
    if item_vecs is None:
        item_vecs = item_vectors(model, num_items)
    hi = num_items if hi is None else hi
    items = item_vecs[lo:hi]
    if len(query) == len(items) and len(query) > 1:
        s = torch.cat([model.score_func(query[:-1], items), model.score_func(query[-1:], items)])
    else:
        s = model.score_func(query, items).reshape(len(query), len(items))
    if lo == 0:
        s[:, 0] = float('-inf')
    return s
