"""The plugin's model registry: its own backbones resolve first, everything else falls back to
RecStudio's ``get_model``.  A registered model is a RecStudio ``BaseRetriever`` subclass."""
from .. import host
from ..errors import UserError

# name -> zero-argument callable returning (class, host-shaped default config)
_REGISTRY = {}


def register(name, factory):
    _REGISTRY[name.lower()] = (name, factory)


def plugin_names():
    return [n for n, _ in _REGISTRY.values()]


def resolve(name):
    """(model class, host default config) for ``name``; clear error listing what exists."""
    if name.lower() in _REGISTRY:
        return _REGISTRY[name.lower()][1]()
    found = host.host_model_class(name)
    if found is None:
        raise UserError(f'-m {name}: unknown model; plugin models: {", ".join(plugin_names()) or "none"}; '
                        f'RecStudio sequential models: {", ".join(host.host_model_names())}')
    return found


def register_class(cls):
    """Register a RecStudio model class passed to the Python API under its class name; its host
    config is that of its closest ancestor RecStudio knows by name (``base_model_config`` otherwise).
    Returns the name."""
    if not isinstance(cls, type) or not hasattr(cls, '_get_dataset_class'):
        raise UserError(f'model={cls!r}: expected a model name or a RecStudio model class (BaseRetriever subclass)')
    name = cls.__name__
    known = _REGISTRY.get(name.lower())
    if known is not None and getattr(known[1], 'model_class', None) not in (None, cls):
        raise UserError(f'model={name}: another class of that name is registered; rename your class')

    def factory():
        for base in cls.__mro__:
            found = host.host_model_class(base.__name__) if base.__name__ != 'BaseRetriever' else None
            if found is not None:
                return cls, found[1]
        return cls, host.base_model_config()
    factory.model_class = cls
    register(name, factory)
    return name


def model_option_names(name):
    """Options a backbone accepts (its RecStudio config's model keys and the plugin YAML's)."""
    from .. import config as C
    _, conf = resolve(name)
    return set(host.model_option_keys(conf)) | {'embed_dim'} | set(C.model_yaml(name).get('model', {}))


def check_model_options(cfg):
    """Backbone options must exist in the backbone's config (typos get a one-line error) and have
    the type of their default: integers (sizes and counts >= 1), numbers (rates in [0, 1)), strings,
    booleans.  What only the backbone can judge (``embed_dim`` divisible by ``head_num``, an unknown
    activation) is checked by building the model once (:func:`check_model_builds`)."""
    from .. import config as C
    name = cfg['model_name']
    known = model_option_names(name)
    bad = [k for k in cfg['model'] if k not in known]
    if bad:
        raise UserError(f'--{bad[0]}: unknown option for {name}; backbone options: '
                        f'{", ".join(sorted(known))}; plugin options: see --help')
    defaults = {**host.model_options(resolve(name)[1]), **(C.model_yaml(name).get('model') or {})}
    for key, v in cfg['model'].items():
        d = defaults.get(key)
        what = None
        if isinstance(d, bool):
            what = None if isinstance(v, bool) else 'true or false'
        elif isinstance(d, int):
            if not (isinstance(v, int) and not isinstance(v, bool)):
                what = 'an integer'
            elif v < 1 and key.endswith(('dim', 'size', 'num', 'len', '_heads', '_layers', '_blocks')):
                what = 'an integer >= 1'
        elif isinstance(d, float):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool)) or v != v or abs(v) == float('inf'):
                what = 'a finite number'
            elif ('dropout' in key or key.endswith('_rate')) and not 0 <= v < 1:
                what = 'a number in [0, 1)'
        elif isinstance(d, str):
            what = None if isinstance(v, str) else 'a string'
        if what:
            raise UserError(f'model.{key}: {v!r} is not valid for {name}; expected {what}')


BUILD_ERRORS = (ValueError, TypeError, RuntimeError, AssertionError, IndexError, KeyError, ZeroDivisionError)


def check_model_builds(build, name, options):
    """``build()`` (constructs the backbone); an error there is a one-line error naming the options."""
    try:
        return build()
    except BUILD_ERRORS as e:
        shown = ', '.join(f'model.{k}={v!r}' for k, v in sorted(options.items())) or 'its default options'
        why = str(e).splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f'{name} cannot be built with {shown}: {why}') from None


def _hstu():
    from .hstu import HSTU
    return HSTU, host.base_model_config()


def _cl4srec():
    # Always the plugin's class, on both flavours: the GitHub source's own CL4SRec knows none of the
    # plugin's options (cl_similarity, cl_temperature, cl_pooling, crop/mask/reorder) and would ignore
    # them silently.  One class means the same model and the same defaults wherever it runs.
    from .cl4srec import CL4SRec
    return CL4SRec, host.base_model_config()


register('HSTU', _hstu)
register('CL4SRec', _cl4srec)
