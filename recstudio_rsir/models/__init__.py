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


def _hstu():
    from .hstu import HSTU
    return HSTU, host.base_model_config()


def _cl4srec():
    found = host.host_model_class('CL4SRec')       # the GitHub source has its own: use it
    if found is not None:
        return found
    from .cl4srec import CL4SRec
    return CL4SRec, host.base_model_config()


register('HSTU', _hstu)
register('CL4SRec', _cl4srec)
