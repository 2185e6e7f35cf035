"""Saved progress of one round's generation, so that an interrupted round resumes at the batch where
it stopped instead of at its first trajectory (Toys' round 3 with fidelity off is 2.35M trajectories;
its round 2's 448k took 836 s on one CPU thread).

A :class:`GenerationCheckpoint` is injected into :func:`~.generation.generate_batched`; the loop gives
each round's generator the folder ``RunLayout.generation_progress(k)`` and removes it once the round's
``synthetic.npz`` and ``generation.json`` are written.  Layout::

    progress.json     fingerprint, the parts (file name, trajectories, size + sha256) and the step
                      counters and seconds at the last save
    part_00000.npz    trajectories of the batches finished since the save before
    part_00001.npz    (``items``/``offsets``/``origin`` as in ``synthetic.npz``; origin = trajectory id)

Why this is exact: batches are independent (all randomness is pre-drawn per trajectory by
:func:`~.generation.predraw`; the KV cache is reset per batch), so the saved trajectories of finished
batches plus the remaining batches are the uninterrupted output, and the counters saved with them
are the counters of exactly those batches.  The fingerprint (generator config, source rows, model
weights, popularity penalty) ties the progress to one generator: progress left by another model or
config is discarded and generation starts over.  A part is written (atomically) before the
``progress.json`` that lists it, so a kill at any moment leaves a consistent folder; a part that no
``progress.json`` lists is overwritten by the next save.  Damaged progress (a part whose size or
sha256 differs from its record, an unreadable ``progress.json``) is a one-line warning naming the file,
and generation starts over: nothing depends on the progress yet, so redoing it gives the same rows.
"""
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from .. import data as D
from ..atomic import check_digest, file_digest, read_json, write_json
from ..errors import UserError
from .generation import STEP_COUNTERS

log = logging.getLogger('recstudio_rsir')

SAVE_EVERY_SECONDS = 300.0     # at most this much generation work is redone after an interruption
MANIFEST = 'progress.json'     # the file names in a progress folder (see the layout above)


def part_name(i: int) -> str:
    """File name of the ``i``-th saved part."""
    return f'part_{i:05d}.npz'


def discard_progress(folder: str) -> None:
    """Remove a progress folder (the round's rows are written, or it belongs to another generator)."""
    shutil.rmtree(folder, ignore_errors=True)


def fingerprint(cfg, sources: List[List[int]], model=None, penalty: Optional[torch.Tensor] = None) -> str:
    """sha256 of what decides a round's trajectories: ``cfg`` (a GenConfig; ``memory_mb`` left out, it
    only changes the chunking), the source rows, every weight of ``model`` and the ``penalty``."""
    h = hashlib.sha256()
    c = {k: v for k, v in cfg.to_json().items() if k != 'memory_mb'}
    h.update(json.dumps(c, sort_keys=True).encode())
    h.update(D.rows_digest(sources).encode())
    tensors = sorted(model.state_dict().items()) if model is not None else []
    if penalty is not None:
        tensors.append(('<penalty>', penalty))
    for name, t in tensors:
        t = t.detach().to('cpu').contiguous().reshape(-1)
        h.update(f'{name} {t.dtype} {t.numel()};'.encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class Restored:
    """What a previous, interrupted call finished: ``rows[t]`` = trajectory t's items."""
    rows: Dict[int, List[int]]
    counters: Dict[str, int]
    seconds: float
    forward_seconds: float


class GenerationCheckpoint:
    """Progress of one generator (``fingerprint``) in ``folder``, saved at most every
    ``every_seconds`` (0 = after every batch) of generation."""

    def __init__(self, folder: str, fingerprint: str, every_seconds: float = None):
        self.folder = folder
        self.fingerprint = fingerprint
        self.every_seconds = SAVE_EVERY_SECONDS if every_seconds is None else float(every_seconds)
        self._parts: List[dict] = []
        self._tids: List[int] = []
        self._rows: List[List[int]] = []
        self._last = time.monotonic()

    @property
    def manifest(self) -> str:
        return os.path.join(self.folder, MANIFEST)

    def restore(self, num_trajectories: int) -> Optional[Restored]:
        """The saved progress of this generator, or None: nothing saved, or saved by another generator,
        or damaged (a one-line warning naming the file); then the folder is emptied."""
        if not os.path.exists(self.manifest):
            return None
        redo = 'generating this round from its start'
        try:
            try:
                m = read_json(self.manifest)
            except UserError:                    # its message says to delete the file; here it is redone
                raise UserError(f'{self.manifest}: damaged (not JSON); {redo}') from None
            if not isinstance(m, dict):
                raise UserError(f'{self.manifest}: damaged (not a JSON object); {redo}')
            if m.get('fingerprint') != self.fingerprint:
                log.info('%s: the saved generation progress is of another model, config or source rows; %s',
                         self.folder, redo)
                self.discard()
                return None
            rows: Dict[int, List[int]] = {}
            for part in m['parts']:
                path = os.path.join(self.folder, os.path.basename(part['file']))
                check_digest(path, part['digest'], self.manifest, redo)
                seqs, tids = D.load_sequences(path, redo)
                if tids is None or len(seqs) != part['trajectories'] or \
                        any(not 0 <= t < num_trajectories for t in tids):
                    raise UserError(f'{path}: damaged (its trajectory ids do not fit this round); {redo}')
                rows.update(zip(tids, seqs))
            counters = {c: int(m['counters'][c]) for c in STEP_COUNTERS}
            seconds, forward = float(m['seconds']), float(m['forward_seconds'])
        except (UserError, KeyError, TypeError, ValueError) as e:
            log.warning('%s', e if isinstance(e, UserError) else
                        f'{self.manifest}: damaged ({type(e).__name__}: {e}); {redo}')
            self.discard()
            return None
        self._parts = list(m['parts'])
        log.info('%s: resuming generation with %d of %d trajectories done (%.0fs of generation saved)',
                 self.folder, len(rows), num_trajectories, seconds)
        return Restored(rows, counters, seconds, forward)

    def add(self, tids: List[int], rows: List[List[int]], stats, seconds: float, forward_seconds: float) -> None:
        """One finished batch (trajectory ids and their items); ``stats``/``seconds``/``forward_seconds``:
        the generator's totals including it.  Saves when ``every_seconds`` have passed since the last
        save."""
        self._tids += tids
        self._rows += rows
        if time.monotonic() - self._last >= self.every_seconds:
            self.save(stats, seconds, forward_seconds)

    def save(self, stats, seconds: float, forward_seconds: float) -> None:
        """Write the batches added since the last save as a new part, then ``progress.json``."""
        if not self._tids:
            return
        os.makedirs(self.folder, exist_ok=True)
        name = part_name(len(self._parts))
        path = os.path.join(self.folder, name)
        D.save_sequences(path, self._rows, self._tids)
        self._parts.append({'file': name, 'trajectories': len(self._tids), 'digest': file_digest(path)})
        write_json(self.manifest, {'fingerprint': self.fingerprint, 'parts': self._parts,
                                   'counters': {c: int(getattr(stats, c)) for c in STEP_COUNTERS},
                                   'seconds': seconds, 'forward_seconds': forward_seconds,
                                   'saved_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
        self._tids, self._rows = [], []
        self._last = time.monotonic()

    def discard(self) -> None:
        """Remove the folder (the round's rows are written, or the progress is of another generator)."""
        discard_progress(self.folder)
        self._parts, self._tids, self._rows = [], [], []
