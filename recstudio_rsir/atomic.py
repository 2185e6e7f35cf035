"""Write-then-rename helpers (no output file is ever left half-written) and the size + hash
records with which a run folder's steps check the files they depend on."""
import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager

_WRITER = True      # False in the processes of a torchrun job other than rank 0


def set_writer(flag: bool) -> None:
    """Whether this process writes the run's files (:mod:`recstudio_rsir.distributed`: rank 0 only).
    A process that does not write still runs every step; what it would write goes to a private
    temporary folder and is thrown away."""
    global _WRITER
    _WRITER = bool(flag)


def is_writer() -> bool:
    return _WRITER


@contextmanager
def atomic_path(path):
    """Yield a temporary path in the same folder; rename it to ``path`` only on success.  In a
    process that does not write (:func:`set_writer`) the path lies in a private temporary folder
    that is removed afterwards."""
    if not _WRITER:
        scratch = tempfile.mkdtemp(prefix='rsir-rank-')
        try:
            yield os.path.join(scratch, os.path.basename(path))
        finally:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_jsonable)
            f.write('\n')


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(text)


def read_json(path):
    """A JSON file the plugin wrote; a damaged one is a one-line UserError naming it."""
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        from .errors import UserError
        raise UserError(f'{path}: damaged ({str(e).splitlines()[0][:120]}); delete it (or its round folder) and '
                        're-run the command to write it again') from None


def file_digest(path):
    """``{'bytes': size, 'sha256': hex}`` of a file: what a step records about a file that a later
    step (or a resumed run) depends on."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return {'bytes': os.path.getsize(path), 'sha256': h.hexdigest()}


def check_digest(path, record, recorded_in, remedy):
    """Raise a one-line UserError when ``path`` is missing or differs from ``record`` (a
    :func:`file_digest` stored in ``recorded_in``); ``remedy`` says what to do."""
    from .errors import UserError
    if not os.path.isfile(path):
        raise UserError(f'{path}: missing (recorded in {recorded_in}); {remedy}')
    now = file_digest(path)
    if now != record:
        what = (f"{now['bytes']} bytes, {record['bytes']} when written" if now['bytes'] != record['bytes']
                else 'same size, other content')
        raise UserError(f'{path}: changed since it was written ({what}; recorded in {recorded_in}); {remedy}')


TMP_NAME = re.compile(r'^\..+\.[A-Za-z0-9_]{4,}\.tmp$')


def remove_stale_temporaries(folder):
    """Delete the temporary files (``.<name>.<random>.tmp``) that writes interrupted by a kill left
    in ``folder`` and below; returns how many.  Call it only while holding the folder's lock."""
    n = 0
    for root, _, files in os.walk(folder):
        for f in files:
            if TMP_NAME.match(f):
                os.remove(os.path.join(root, f))
                n += 1
    return n


@contextmanager
def run_lock(run_out):
    """Hold ``run_out/.lock`` (the owner's pid) while a run is written: a second process that
    reaches the folder gets a one-line error instead of writing beside it.  A lock left by a process
    that is gone is taken over; the same process may enter again (a suite runs a trainer)."""
    from .errors import UserError
    os.makedirs(run_out, exist_ok=True)
    path = os.path.join(run_out, '.lock')
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid == os.getpid():
                yield                    # re-entered by the holder
                return
            if pid and _alive(pid):
                raise UserError(f'{run_out} is being written by process {pid}; wait for it to finish (or stop it), '
                                'or use another --output (suites: other --methods / --seeds)') from None
            os.remove(path)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield
    finally:
        os.remove(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # another user's live process
        return True
    return True


def _jsonable(x):
    if hasattr(x, 'item'):
        return x.item()
    if hasattr(x, 'tolist'):
        return x.tolist()
    raise TypeError(f'{type(x).__name__} is not JSON serialisable')
