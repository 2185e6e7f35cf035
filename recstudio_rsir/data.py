"""Datasets: reading user files, the embedded synthetic dataset, atomic-file export, statistics.

Everything here is host-independent: a dataset is a ``dict`` mapping a user token to its
chronological list of ``(item token, timestamp)`` pairs.  :func:`write_atomic` turns it into the
RecStudio atomic files (``<name>.inter``) that :mod:`recstudio_rsir.host` loads.

Accepted inputs (``-d``):

* ``embedded`` (or ``embedded:SEED``): the default, a generated miniature of Beauty/Toys (:func:`make_miniature`).
* ``planted`` (or ``planted:SEED``): the previous default, planted and easily learnt (:func:`make_planted`);
  the tests' small data.
* a sequence file ``user item item ...`` per line, plain or ``.gz`` (the S3-Rec/ICLRec release).
* a ``.csv`` / ``.tsv`` table with a header ``user,item,timestamp`` (timestamp optional).
* a folder holding one RecStudio atomic file (``<folder>/<name>.inter``), or the ``.inter`` file
  itself: columns found by the header (``user_id:token item_id:token rating:float timestamp:float``).
* a RecStudio dataset name (``ml-100k``...): the host layer finds or downloads its ``.inter``.
"""
import contextlib
import gzip
import hashlib
import json
import logging
import os
import zlib

import numpy as np

from .atomic import atomic_path, file_digest, write_json, write_text
from .errors import UserError

log = logging.getLogger('recstudio_rsir')

MIN_LEN = 3  # leave-one-out needs one training, one validation and one test item


# ----------------------------------------------------------------------------- readers

def _open_text(path):
    if not os.path.exists(path):
        raise UserError(f'{path}: no such file')
    if os.path.isdir(path):
        raise UserError(f'{path}: is a folder, expected a file')
    if path.endswith('.gz'):
        return gzip.open(path, 'rt', encoding='utf-8')
    return open(path, 'r', encoding='utf-8')


@contextlib.contextmanager
def _reading(path):
    """Turn the errors of a file that is not text, not UTF-8 or a broken ``.gz`` into one line."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise UserError(f'{path}: not UTF-8 text (byte {e.start} of the decoded stream); expected a text file') \
            from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f'{path}: a damaged or truncated .gz file ({e}); expected a complete gzip of a text file') \
            from None
    except OSError as e:
        raise UserError(f'{path}: cannot be read ({e.strerror or e})') from None


def _int_token(tok, path, lineno, what):
    try:
        return str(int(tok))
    except ValueError:
        raise UserError(f'{path}:{lineno}: {what} {tok!r} is not an integer id') from None


def read_sequence_file(path):
    """Read ``user item item ...`` lines (plain or .gz). Returns {user: [(item, t), ...]}.

    Timestamps are the positions in the line (the files carry none).
    """
    seqs = {}
    n = 0
    with _reading(path), _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            toks = line.split()
            if not toks:
                continue
            n += 1
            user = _int_token(toks[0], path, lineno, 'user')
            if len(toks) < 2:
                raise UserError(f'{path}:{lineno}: user {user} has no items (expected "user item item ...")')
            if user in seqs:
                raise UserError(f'{path}:{lineno}: user {user} appears on more than one line')
            seqs[user] = [(_int_token(t, path, lineno, 'item'), float(i)) for i, t in enumerate(toks[1:])]
    if n == 0:
        raise UserError(f'{path}: file is empty (expected "user item item ..." lines)')
    return seqs


def read_table_file(path):
    """Read a CSV/TSV with header ``user,item[,timestamp]``. Returns {user: [(item, t), ...]}."""
    sep = '\t' if path.endswith(('.tsv', '.tsv.gz')) else ','
    seqs = {}
    with _reading(path), _open_text(path) as f:
        header = f.readline()
        if not header.strip():
            raise UserError(f'{path}: file is empty (expected a header "user{sep}item{sep}timestamp")')
        cols = [c.strip().lower() for c in header.rstrip('\n').split(sep)]
        if cols[:2] != ['user', 'item'] or len(cols) > 3 or (len(cols) == 3 and cols[2] != 'timestamp'):
            raise UserError(f'{path}:1: header must be "user{sep}item" or "user{sep}item{sep}timestamp", '
                            f'got {header.strip()!r}')
        rows = 0
        for lineno, line in enumerate(f, 2):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.rstrip('\n').split(sep)]
            if len(parts) != len(cols):
                raise UserError(f'{path}:{lineno}: expected {len(cols)} fields, got {len(parts)}')
            user = _int_token(parts[0], path, lineno, 'user')
            item = _int_token(parts[1], path, lineno, 'item')
            if len(cols) == 3:
                try:
                    t = float(parts[2])
                except ValueError:
                    raise UserError(f'{path}:{lineno}: timestamp {parts[2]!r} is not a number') from None
            else:
                t = float(rows)
            seqs.setdefault(user, []).append((item, t))
            rows += 1
    if not seqs:
        raise UserError(f'{path}: no data rows after the header')
    for u in seqs:  # stable: ties keep file order
        seqs[u].sort(key=lambda p: p[1])
    return seqs


USER_FIELDS = ('user_id', 'user', 'uid', 'userid', 'user_token')
ITEM_FIELDS = ('item_id', 'item', 'iid', 'itemid', 'item_token')
TIME_FIELDS = ('timestamp', 'time', 'ts', 'datetime')


def _field_name(col):
    """``user_id:token`` -> ``user_id`` (RecStudio/RecBole typed header), lower case."""
    return col.strip().split(':', 1)[0].strip().lower()


def _find(names, accepted):
    hits = [i for i, n in enumerate(names) if n in accepted]
    return hits[0] if hits else None


def read_inter_file(path, fields=None):
    """Read a RecStudio/RecBole atomic ``.inter`` file.  Returns {user: [(item, t), ...]} in time order.

    The columns are found by the header's names (``name:type`` or plain ``name``, tab-separated):
    user (``user_id``), item (``item_id``) and, if present, timestamp (``timestamp``); any other
    column (rating, ...) is allowed and ignored.  A file without a header is read as three columns
    user, item, timestamp, or by ``fields`` (the dataset config's ``inter_feat_field``) when given.
    Without a timestamp column the file order is the time order.  Ties keep the file order.
    """
    seqs = {}
    with _reading(path), _open_text(path) as f:
        first = f.readline()
        if not first.strip():
            raise UserError(f'{path}: file is empty (expected a header like user_id:token<TAB>item_id:token'
                            '<TAB>timestamp:float)')
        sep = '\t' if '\t' in first else None
        cols = first.rstrip('\n').split(sep)
        names = [_field_name(c) for c in cols]
        has_header = any(':' in c for c in cols) or _find(names, USER_FIELDS) is not None
        if not has_header:
            names = [_field_name(c) for c in fields] if fields else ['user_id', 'item_id', 'timestamp']
        u, i, t = _find(names, USER_FIELDS), _find(names, ITEM_FIELDS), _find(names, TIME_FIELDS)
        if u is None or i is None:
            raise UserError(f'{path}:1: the header must name a user column (user_id) and an item column (item_id), '
                            f'got {first.strip()!r}')
        width = len(names)
        lines = f if has_header else [first] + list(f)
        for lineno, line in enumerate(lines, 2 if has_header else 1):
            if not line.strip():
                continue
            parts = line.rstrip('\n').split(sep)
            if len(parts) != width:
                what = 'header' if has_header else ('fields ' + ', '.join(names) if fields else
                                                    'columns user, item, timestamp (no header)')
                raise UserError(f'{path}:{lineno}: expected {width} fields (by the {what}), got {len(parts)}')
            if t is not None:
                try:
                    ts = float(parts[t])
                except ValueError:
                    raise UserError(f'{path}:{lineno}: timestamp {parts[t]!r} is not a number') from None
            else:
                ts = float(lineno)
            seqs.setdefault(parts[u].strip(), []).append((parts[i].strip(), ts))
    if not seqs:
        raise UserError(f'{path}: no interactions after the header')
    for user in seqs:  # stable: ties keep file order
        seqs[user].sort(key=lambda p: p[1])
    return seqs


def drop_short_users(seqs, min_len=MIN_LEN, source=''):
    """Drop users with fewer than ``min_len`` items, with one counted warning."""
    kept = {u: s for u, s in seqs.items() if len(s) >= min_len}
    dropped = len(seqs) - len(kept)
    if dropped:
        log.warning('%s: dropped %d of %d users with fewer than %d items (leave-one-out needs %d)',
                    source or 'dataset', dropped, len(seqs), min_len, min_len)
    if not kept:
        raise UserError(f'{source or "dataset"}: no user has at least {min_len} items')
    return kept


# ----------------------------------------------------------------------------- embedded dataset

def make_miniature(seed=0, n_users=4500, n_items=4000, n_cats=20, p_complement=0.1, p_category=0.25,
                   p_taste=0.25, popularity_sigma=1.3, popularity_cap=0.97, length_a=3.5, length_b=2.6, max_len=400,
                   n_eras=12, life=2, p_advance=0.05):
    """The default dataset (``-d embedded[:SEED]``, issue #16 item 1): a deterministic miniature of the
    Amazon Beauty / Toys files, about 3,800 users and 2,100 items, whose statistics sit beside theirs
    (docs/embedded.md: users per item, length quantiles, no repeats, pair recurrence, popularity
    concentration a little below theirs) and which is as hard as they are: SASRec beats popularity about
    9x on test NDCG@10 (Toys 10x, Beauty 8x).  Train it with the demo's recipe (batch 256, lr 0.002,
    dropout 0.2: yamls/demo.yaml) or the real files' (the defaults) with patience 30; a short patience
    or small batches with a high learning rate stop on the early plateau at popularity level.

    Items have a category (``n_cats``) and a lognormal attractiveness (``popularity_sigma``, capped at the
    ``popularity_cap`` quantile); each has two complements in its category.  A user has a sparse taste
    over categories (Dirichlet 0.08) and a length 5 + X with P(X = k) ~ (k + length_a)^-length_b.  From a
    first item drawn from the taste, the next item is a complement of the current one (``p_complement``),
    an item of the current category (``p_category``), of a category drawn from the taste (``p_taste``),
    or any item, each weighted by attractiveness; items are not repeated.  The result is a 5-core.

    Time trend (``n_eras`` > 1): every item is launched in one of ``n_eras`` eras and is on sale for
    ``life`` eras; a user starts in a uniformly drawn era and moves on to the next with probability
    ``p_advance`` before each step; every draw but a complement is among the items on sale then.  A
    user's last items are then recent ones, which global popularity ranks poorly, as on the real files.
    ``n_eras=1`` is the generator without a trend, draw for draw (the trend is what makes it as hard as
    the real files relative to popularity; without it SASRec beats popularity about 5x).

    Returns {user token: [(item token, t), ...]}.
    """
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, n_cats, n_items)
    weight = np.exp(rng.normal(0.0, popularity_sigma, n_items))
    weight = np.minimum(weight, np.quantile(weight, popularity_cap))      # no single runaway bestseller
    era = rng.integers(0, n_eras, n_items) if n_eras > 1 else np.zeros(n_items, dtype=np.int64)

    def pool(mask):                         # (items, their cumulative attractiveness) of one draw table
        idx = np.flatnonzero(mask)
        c = np.cumsum(weight[idx])
        return idx, (c / c[-1] if len(idx) else c)
    on_sale = [(era <= e) & (era > e - life) for e in range(n_eras)]
    by_cat = [[pool(on_sale[e] & (cat == c)) for c in range(n_cats)] for e in range(n_eras)]
    anywhere = [pool(on_sale[e]) for e in range(n_eras)]

    def draw(table):                        # one attractiveness-weighted draw; None from an empty table
        idx, c = table
        return idx[min(int(np.searchsorted(c, rng.random())), len(idx) - 1)] if len(idx) else None
    complement = np.array([[draw(by_cat[era[i]][cat[i]]) for _ in range(2)] for i in range(n_items)])
    ks = np.arange(max_len - 5 + 1)
    lcdf = np.cumsum((ks + length_a) ** -length_b)
    lcdf /= lcdf[-1]
    cuts = np.cumsum([p_complement, p_category, p_taste])
    seqs = {}
    for u in range(n_users):
        taste = np.cumsum(rng.dirichlet(np.full(n_cats, 0.08)))
        taste /= taste[-1]

        def liked():
            return min(int(np.searchsorted(taste, rng.random())), n_cats - 1)
        length = 5 + int(np.searchsorted(lcdf, rng.random()))
        e = int(rng.integers(0, n_eras)) if n_eras > 1 else 0
        cur = draw(by_cat[e][liked()])
        while cur is None:                  # the liked category has nothing on sale in this era
            cur = draw(anywhere[e])
        seq, seen = [cur], {cur}
        for _ in range(20 * length):
            if len(seq) >= length:
                break
            if n_eras > 1 and e < n_eras - 1 and rng.random() < p_advance:
                e += 1
            r = rng.random()
            if r < cuts[0]:
                nxt = complement[cur, rng.integers(2)]
            elif r < cuts[1]:
                nxt = draw(by_cat[e][cat[cur]])
            elif r < cuts[2]:
                nxt = draw(by_cat[e][liked()])
            else:
                nxt = draw(anywhere[e])
            if nxt is not None and nxt not in seen:
                seq.append(nxt)
                seen.add(nxt)
                cur = nxt
        seqs[str(u + 1)] = [(str(int(i) + 1), float(t)) for t, i in enumerate(seq)]
    return k_core(seqs, 5)


def make_planted(seed=0, n_users=3000, n_items=1200, n_topics=24, mean_len=8.0):
    """The previous default dataset (``-d planted[:SEED]``; the tests' small data): planted, easily
    learnt sequential structure, far easier than the real files (SASRec NDCG@10 about 0.36, 30x
    popularity; docs/embedded.md compares it with Beauty and Toys), where RSIR loses.

    Items are split into ``n_topics`` topics; every item has 3 "successor" items, mostly in its own
    topic.  A user has one or two favourite topics; the next item follows a successor of the current
    item (probability 0.6), else a random item of a favourite topic (0.3), else any popular-biased
    item (0.1).  Lengths are 5 + geometric, so the mean is about ``mean_len``, like the Amazon sets;
    the result is filtered to a 5-core.  A sequential model beats popularity by a wide margin here.

    Returns {user token: [(item token, t), ...]}.
    """
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, n_topics, n_items)
    members = [np.flatnonzero(topic == k) for k in range(n_topics)]
    pop = rng.zipf(1.6, n_items).astype(float)
    pop = np.minimum(pop, 50.0)
    pop /= pop.sum()
    succ = np.empty((n_items, 3), dtype=np.int64)
    for i in range(n_items):
        same = members[topic[i]]
        for j in range(3):
            succ[i, j] = rng.choice(same) if rng.random() < 0.85 else rng.integers(n_items)
    succ_p = np.array([0.6, 0.25, 0.15])
    seqs = {}
    for u in range(n_users):
        favs = rng.choice(n_topics, size=1 + (rng.random() < 0.5), replace=False)
        length = 5 + rng.geometric(1.0 / max(mean_len - 4.0, 1.0)) - 1
        length = int(min(length, 60))
        cur = rng.choice(members[favs[0]])
        seq = [cur]
        while len(seq) < length:
            r = rng.random()
            if r < 0.6:
                cur = succ[cur, rng.choice(3, p=succ_p)]
            elif r < 0.9:
                cur = rng.choice(members[rng.choice(favs)])
            else:
                cur = rng.choice(n_items, p=pop)
            if cur not in seq:
                seq.append(cur)
        seqs[str(u + 1)] = [(str(int(i) + 1), float(t)) for t, i in enumerate(seq)]
    return k_core(seqs, 5)


def k_core(seqs, k):
    """Iteratively drop items with < k interactions and users with < k items."""
    while True:
        counts = {}
        for s in seqs.values():
            for i, _ in s:
                counts[i] = counts.get(i, 0) + 1
        new = {}
        for u, s in seqs.items():
            s2 = [(i, t) for i, t in s if counts[i] >= k]
            if len(s2) >= k:
                new[u] = s2
        if len(new) == len(seqs) and all(len(new[u]) == len(seqs[u]) for u in new):
            return new
        seqs = new


# ----------------------------------------------------------------------------- statistics

def sequence_stats(sequences, num_items=None, users=None):
    """Sequences, users, items, interactions, density, sparsity and mean length of a list of
    item-id sequences (any hashable ids).  ``num_items`` fixes the item-space size (default: the
    number of distinct items seen); ``users`` the number of users (default: one per sequence).
    Density = interactions / (users x items), as the paper's Table 4."""
    n_seq = len(sequences)
    n_users = n_seq if users is None else users
    n_inter = sum(len(s) for s in sequences)
    items = set()
    for s in sequences:
        items.update(s)
    n_items = num_items if num_items is not None else len(items)
    density = n_inter / (n_users * n_items) if n_users and n_items else 0.0
    return {'sequences': n_seq, 'users': n_users, 'items': n_items, 'items_seen': len(items), 'interactions': n_inter,
            'density': density, 'sparsity': 1.0 - density,
            'mean_length': n_inter / n_seq if n_seq else 0.0}


# ----------------------------------------------------------------------------- atomic export

def _inter_lines(seqs):
    yield 'user_id:token\titem_id:token\ttimestamp:float\n'
    for u, s in seqs.items():
        for i, t in s:
            yield f'{u}\t{i}\t{t}\n'


def write_atomic(seqs, folder, name):
    """Write ``<folder>/<name>.inter`` (RecStudio atomic format) atomically."""
    path = os.path.join(folder, f'{name}.inter')
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.writelines(_inter_lines(seqs))
    return path


def inter_sha256(seqs):
    """sha256 of the file :func:`write_atomic` writes for ``seqs``, without writing it."""
    h = hashlib.sha256()
    for line in _inter_lines(seqs):
        h.update(line.encode())
    return h.hexdigest()


EMBEDDED = {'embedded': (make_miniature, 'embedded miniature of Amazon Beauty/Toys'),
            'planted': (make_planted, 'planted synthetic dataset (easy; the default before issue #16)')}
ACCEPTED = ('embedded[:SEED], planted[:SEED], a sequence file (.txt/.gz), a .csv/.tsv file, a folder holding '
            'one <name>.inter file, or a RecStudio dataset name')


def _converted(cache_root, source_path, label, read):
    """Convert ``source_path`` once into ``<cache_root>/<label>_<hash>/<same>.inter``; returns
    (name, folder).  Keyed by the content hash, so a changed file is converted again."""
    h = hashlib.md5()
    with open(source_path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    name = f'{label}_{h.hexdigest()[:10]}'.replace('-', '_').replace('.', '_')
    folder = os.path.join(cache_root, name)

    def convert():
        seqs = drop_short_users(read(), MIN_LEN, source_path)
        items = {i for s in seqs.values() for i, _ in s}
        if len(seqs) < 2 or len(items) < 2:
            raise UserError(f'{source_path}: {len(seqs)} user(s) with at least {MIN_LEN} items and {len(items)} '
                            'distinct item(s); training and ranking need at least 2 of each')
        return seqs
    _cached_inter(folder, name, convert)
    return name, folder


def _cached_inter(folder, name, make):
    """Make ``<folder>/<name>.inter`` from ``make()`` (user -> [(item, t)]) unless it is there and
    still matches the size + hash recorded beside it (``<name>.inter.digest.json``, written after
    it): a damaged or edited converted file is converted again, never read.  Returns the file's
    :func:`file_digest`."""
    path = os.path.join(folder, f'{name}.inter')
    record = path + '.digest.json'
    if os.path.isfile(path) and os.path.isfile(record):
        try:
            with open(record, encoding='utf-8') as f:
                digest = file_digest(path)
                if json.load(f) == digest:
                    return digest
        except (ValueError, UnicodeDecodeError, OSError):
            pass
    write_atomic(make(), folder, name)
    digest = file_digest(path)
    write_json(record, digest)
    return digest


def rows_digest(rows):
    """sha256 of a list of item-id rows (lengths and items): what a trained model records about the
    training rows it was trained on, so that a resumed run notices rows that changed under it."""
    h = hashlib.sha256()
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    h.update(lengths.tobytes())
    h.update(np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum())).tobytes())
    return h.hexdigest()


def resolve_dataset(spec, cache_root, find_named=None):
    """Turn a ``-d`` value into ``(name, folder, description)``: ``folder/<name>.inter`` is an atomic
    file with exactly the columns user_id, item_id, timestamp, in time order, under ``cache_root``.

    Every input is converted (once, keyed by its content hash): sequence files, CSV/TSV, RecStudio
    atomic ``.inter`` files read by their header, and RecStudio dataset names, whose file
    ``find_named(name, cache_root)`` returns as ``(path, inter_feat_field)`` (the host layer's).
    """
    if spec is None or spec == '':
        raise UserError(f'-d/--dataset: empty; accepted: {ACCEPTED}')
    kind = spec.split(':', 1)[0]
    if kind in EMBEDDED:
        seed = spec.split(':', 1)[1] if ':' in spec else '0'
        try:
            seed = int(seed)
        except ValueError:
            raise UserError(f'-d {spec}: the {kind} dataset seed must be an integer') from None
        name = f'{kind}{seed}'
        folder = os.path.join(cache_root, name)
        made = EMBEDDED[kind][0](seed)          # about a second; the cached copy must be this data
        if _cached_inter(folder, name, lambda: made)['sha256'] != inter_sha256(made):
            raise UserError(f'{folder}: this run folder holds `-d {kind}` data made by an older generator (before '
                            f'issue #16 `-d embedded` was what `-d planted` is now), and its models were trained on '
                            f'it; give a new --output to run on today\'s `-d {kind}`')
        return name, folder, f'{EMBEDDED[kind][1]} (seed {seed})'
    if os.path.isdir(spec):
        inters = sorted(f for f in os.listdir(spec) if f.endswith('.inter'))
        if len(inters) != 1:
            raise UserError(f'{spec}: a dataset folder must hold exactly one <name>.inter file, found {len(inters)}')
        path = os.path.join(spec, inters[0])
        name, folder = _converted(cache_root, path, inters[0][:-len('.inter')], lambda: read_inter_file(path))
        return name, folder, f'atomic files in {spec}'
    if os.path.isfile(spec) or os.path.sep in spec or spec.endswith(('.txt', '.gz', '.csv', '.tsv', '.inter')):
        with _open_text(spec) as _:
            pass
        base = os.path.basename(spec).split('.')[0]
        if spec.endswith('.inter'):
            read = lambda: read_inter_file(spec)               # noqa: E731
        elif spec.endswith(('.csv', '.tsv', '.csv.gz', '.tsv.gz')):
            read = lambda: read_table_file(spec)               # noqa: E731
        else:
            read = lambda: read_sequence_file(spec)            # noqa: E731
        name, folder = _converted(cache_root, spec, base, read)
        return name, folder, f'file {spec}'
    if find_named is None:
        raise UserError(f'-d {spec}: no such file or folder; accepted: {ACCEPTED}')
    path, fields = find_named(spec, cache_root)
    name, folder = _converted(cache_root, path, spec, lambda: read_inter_file(path, fields))
    return name, folder, f'RecStudio dataset {spec}'


def read_dataset(spec, cache_root, find_named=None):
    """{user: [(item, t), ...]} of any ``-d`` value (through :func:`resolve_dataset`)."""
    name, folder, _ = resolve_dataset(spec, cache_root, find_named)
    return read_inter_file(os.path.join(folder, f'{name}.inter'))


def write_sequences_txt(path, sequences):
    """Write sequences as ``row item item ...`` lines (used by examples and reports)."""
    write_text(path, ''.join(f'{k} ' + ' '.join(map(str, s)) + '\n' for k, s in enumerate(sequences)))


def save_sequences(path, seqs, origin):
    """Rows (item-id lists) and an int per row (``origin``) as ``items``/``offsets``/``origin`` arrays
    of a compressed ``.npz``, written atomically (read back by :func:`load_sequences`)."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    items = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, items=items, offsets=offsets, origin=np.asarray(origin, dtype=np.int64))


def load_sequences(path, redo="delete this round's folder and re-run the command to generate it again"):
    """(rows, origins) of a ``synthetic.npz`` (never unpickled: ``allow_pickle=False``); a damaged
    file is a one-line UserError naming it and saying what to do (``redo``)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            items, offsets = z['items'], z['offsets']
            origin = z['origin'].tolist() if 'origin' in z.files else None      # older runs kept no origins
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(items) or \
                (np.diff(offsets) < 0).any() or (origin is not None and len(origin) != len(offsets) - 1):
            raise ValueError('offsets do not match the items')
    except Exception as e:                                  # noqa: BLE001 - zip, npy and shape errors alike
        raise UserError(f'{path}: damaged ({str(e).splitlines()[0][:100] if str(e) else type(e).__name__}); '
                        f'{redo}') from None
    return [items[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])], origin
