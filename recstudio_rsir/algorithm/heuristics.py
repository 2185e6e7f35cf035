"""Heuristic augmentations the paper compares RSIR with (``--augment reorder`` / ``--augment insert``).

Each source row (a training sequence) gives ``aug.copies`` augmented copies; they become extra
training rows exactly like RSIR's synthetic sequences (same de-duplication and length filter, same
injection path, statistics and per-round report).  Definitions (per copy, source of length n):

* **reorder**: a window of w = max(2, floor(aug.reorder_ratio * n)) consecutive items, its start
  uniform over the n - w + 1 places, is put in a uniformly random order; when that order is the
  original one the window is rotated by one position instead, so the copy always differs from the
  source.  Rows with n < 2 give no copy.  (CL4SRec's reorder augmentation, ratio 0.2.)
* **insert**: k = max(1, floor(aug.insert_rate * n)) items are inserted, each at a uniform gap of
  the row (n + 1 gaps, drawn independently; items inserted at the same gap keep their draw order).
  Inserted items are drawn from the items the row does not contain, uniformly
  (``aug.insert_items: uniform``) or in proportion to their count in the real training rows
  (``popularity``).  The copy is truncated to its last ``rsir.max_len`` items.

Randomness: one ``numpy.random.Generator`` seeded with ``aug.seed + 1000 * round``; the output
depends only on the seed and the sources.
"""
import numpy as np

from ..analysis.stats import item_counts

INSERT_ITEMS = ('uniform', 'popularity')


def reorder_copy(seq, ratio, rng):
    """One reordered copy of ``seq`` (list of ids) or None when len(seq) < 2."""
    n = len(seq)
    if n < 2:
        return None
    w = max(2, int(np.floor(ratio * n)))
    w = min(w, n)
    start = int(rng.integers(0, n - w + 1))
    perm = rng.permutation(w)
    if np.array_equal(perm, np.arange(w)):
        perm = np.roll(perm, 1)
    out = list(seq)
    out[start:start + w] = [seq[start + int(j)] for j in perm]
    return out


def insert_copy(seq, rate, rng, cdf, max_len):
    """One copy of ``seq`` with items inserted.

    Args:
        cdf: ``[num_items]`` cumulative sampling weights over item ids (normalised to end at 1;
            the padding id 0 has weight 0).  Draws that hit an item of the row, or one already
            drawn, are drawn again (rejection), which samples from the weights restricted to the
            items the row does not contain.
    """
    n = len(seq)
    k = max(1, int(np.floor(rate * n)))
    banned = set(seq)
    new = []
    for _ in range(100 * k):
        if len(new) == k:
            break
        i = int(np.searchsorted(cdf, rng.random(), side='right'))
        if 0 < i < len(cdf) and i not in banned:
            new.append(i)
            banned.add(i)
    if len(new) < k:
        return None
    gaps = rng.integers(0, n + 1, size=k)
    order = np.argsort(gaps, kind='stable')
    out, prev = [], 0
    for j in order:
        g = int(gaps[j])
        out.extend(seq[prev:g])
        out.append(new[j])
        prev = g
    out.extend(seq[prev:])
    return out[-max_len:] if max_len else out


def augment_rows(kind, sources, real, num_items, acfg, max_len, round_k):
    """Augmented copies of ``sources`` for round ``round_k``.

    Returns (rows, origin): ``origin[i]`` is the index in ``sources`` of row i.  ``real`` (the real
    training rows) sets the popularity weights of ``insert_items: popularity``.
    """
    rng = np.random.default_rng(int(acfg['seed']) + 1000 * round_k)
    copies = int(acfg['copies'])
    if kind == 'insert':
        if acfg['insert_items'] == 'popularity':
            weights = item_counts(real, num_items).astype(np.float64)
        else:
            weights = np.ones(num_items, dtype=np.float64)
        weights[0] = 0.0
        cdf = np.cumsum(weights) / weights.sum()
    rows, origin = [], []
    for i, s in enumerate(sources):
        for _ in range(copies):
            if kind == 'reorder':
                c = reorder_copy(s, float(acfg['reorder_ratio']), rng)
            else:
                c = insert_copy(s, float(acfg['insert_rate']), rng, cdf, max_len)
            if c is not None:
                rows.append(c)
                origin.append(i)
    return rows, origin
