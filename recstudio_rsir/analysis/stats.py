"""What the training data of a round looks like: dataset statistics (paper Table 4), approximate
entropy (paper appendix E) and diagnostics of the synthetic rows (signs of bias amplification).

Sequences here are lists of RecStudio item ids (1 .. num_items - 1).
"""
import math
from collections import Counter

import numpy as np


def apen(seq, m=2, r=0):
    """Approximate entropy ApEn(m, r) of one sequence (Pincus 1991, as the paper's appendix E).

    Windows v_k = seq[k:k+m] (k = 0 .. N-m); C_k = |{j : max_q |v_k[q] - v_j[q]| <= r}| / (N-m+1);
    Phi^m = mean_k ln C_k; ApEn = Phi^m - Phi^(m+1).  With r = 0 (the paper's choice: item ids carry
    no order) two windows are similar only when equal, and C_k is the share of windows equal to v_k.
    Returns None when N < m + 1 (no window of length m + 1).
    """
    n = len(seq)
    if n < m + 1:
        return None
    return _phi(seq, m, r) - _phi(seq, m + 1, r)


def _phi(seq, m, r):
    wins = [tuple(seq[k:k + m]) for k in range(len(seq) - m + 1)]
    n = len(wins)
    if r == 0:
        counts = Counter(wins)
        return sum(math.log(counts[w] / n) for w in wins) / n
    a = np.asarray(wins, dtype=np.float64)                                   # [n, m]
    d = np.abs(a[:, None, :] - a[None, :, :]).max(-1)                        # [n, n] Chebyshev distances
    return float(np.log((d <= r).sum(1) / n).mean())


def apen_summary(sequences, m=2, r=0):
    """Mean ApEn over the sequences long enough to have one (N >= m + 1), its reciprocal (the
    paper reports 1/ApEn, following Shen et al. 2024) and how many sequences counted."""
    vals = [v for v in (apen(s, m, r) for s in sequences) if v is not None]
    mean = float(np.mean(vals)) if vals else float('nan')
    return {'apen': mean, 'apen_reciprocal': (1.0 / mean) if vals and mean != 0 else float('nan'),
            'apen_sequences': len(vals), 'apen_m': m, 'apen_r': r}


def _flat(sequences):
    """All ids of the sequences, in order: ``[total]`` int64."""
    return np.fromiter((i for s in sequences for i in s), dtype=np.int64)


def item_counts(sequences, num_items, flat=None):
    """Interactions per item id: ``[num_items]`` int64 (index 0 = padding, always 0).  ``flat``:
    the sequences already flattened by :func:`_flat`, when the caller has them."""
    flat = _flat(sequences) if flat is None else flat
    return np.bincount(flat, minlength=num_items)[:num_items]


def synthetic_diagnostics(synthetic, sources, real, num_items, top_share=0.1):
    """How the synthetic rows of one round relate to the data they came from.

    Args:
        synthetic: the rows added this round.
        sources: ``sources[i]`` is the row synthetic[i] was made from (its user's items).
        real: the real training rows (the reference for popularity).
        num_items: item-id range (ids 1 .. num_items - 1).
    Returns a dict: interactions; share of synthetic interactions on items of the source row
    (own history) vs new items; mean popularity (training count of the item, per interaction) of
    synthetic vs real interactions; share of interactions on the top ``top_share`` most popular
    items in both; item coverage (distinct items / items) of the synthetic rows and of the real ones;
    items that appear in synthetic rows but never in real ones.
    """
    real_flat, syn_flat = _flat(real), _flat(synthetic)
    pop = item_counts(real, num_items, real_flat)                            # [num_items]
    n_items = num_items - 1
    k = max(1, int(round(top_share * n_items)))
    top = np.zeros(num_items, dtype=bool)
    top[1 + np.argsort(-pop[1:], kind='stable')[:k]] = True
    own = 0
    for s, src in zip(synthetic, sources):
        mine = set(src)
        own += sum(1 for i in s if i in mine)
    syn_items = np.unique(syn_flat)
    real_items = np.unique(real_flat)
    n_syn = len(syn_flat)
    return {
        'synthetic_interactions': int(n_syn),
        'own_history_share': own / n_syn if n_syn else 0.0,
        'new_item_share': 1.0 - own / n_syn if n_syn else 0.0,
        'popularity_mean_synthetic': float(pop[syn_flat].mean()) if n_syn else 0.0,
        'popularity_mean_real': float(pop[real_flat].mean()) if len(real_flat) else 0.0,
        'top_share': top_share,
        'top_items_share_synthetic': float(top[syn_flat].mean()) if n_syn else 0.0,
        'top_items_share_real': float(top[real_flat].mean()) if len(real_flat) else 0.0,
        'coverage_synthetic': len(syn_items) / n_items if n_items else 0.0,
        'coverage_real': len(real_items) / n_items if n_items else 0.0,
        'items_only_in_synthetic': int(len(np.setdiff1d(syn_items, real_items))),
    }


def dataset_profile(sequences):
    """The statistics an embedded dataset is compared with real files by (issue #16 item 1):
    users, items, interactions, interactions per item, sequence-length quantiles, concentration
    of item popularity (share of the top 10% of items, Gini), repeats within a user's sequence and
    how often consecutive pairs recur across users.  ``sequences``: lists of item ids (any hashable)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    counts = np.array(sorted(Counter(i for s in sequences for i in s).values()), dtype=np.float64)   # ascending
    n = len(counts)
    top = counts[::-1][:max(1, int(round(0.1 * n)))].sum() / counts.sum()
    gini = float((2 * np.arange(1, n + 1) - n - 1).dot(counts) / (n * counts.sum()))
    repeats = sum(len(s) - len(set(s)) for s in sequences) / max(1, lengths.sum())
    pairs = Counter((a, b) for s in sequences for a, b in zip(s, s[1:]))
    q = np.percentile(lengths, [10, 25, 50, 75, 90, 99])
    return {'users': len(sequences), 'items': n, 'interactions': int(lengths.sum()),
            'interactions_per_item': float(lengths.sum() / max(n, 1)), 'mean_length': float(lengths.mean()),
            'length_p10': float(q[0]), 'length_p25': float(q[1]), 'length_median': float(q[2]),
            'length_p75': float(q[3]), 'length_p90': float(q[4]), 'length_p99': float(q[5]),
            'length_max': int(lengths.max()), 'top10_item_share': float(top), 'item_gini': gini,
            'repeat_share': float(repeats),
            'pair_recurrence': float(sum(c for c in pairs.values() if c > 1) / max(1, sum(pairs.values())))}
