"""The self-improving loop (``--augment rsir``), the heuristic baselines run through the same loop
(``--augment reorder|insert``) and plain training (``--augment none``).

Output folder layout (every file written under a temporary name, then renamed)::

    config.yaml                resolved config
    dataset/                   converted atomic files
    round_0/ ... round_K/
        synthetic.npz          (round >= 1) the synthetic sequences added in this round:
                               items int32 [total], offsets int64 [n+1]; sequence i is
                               items[offsets[i]:offsets[i+1]] (RecStudio item ids, see item_tokens.txt);
                               origin int64 [n]: the source row each came from (index into the
                               real training rows followed by the earlier synthetic rows)
        generation.json        generator summary (counts, acceptance, rejection reasons, lengths,
                               own-history share, time) and ``diagnostics`` (popularity, coverage)
        train_stats.json       statistics of this round's training rows (real + all synthetic so far),
                               approximate entropy included
        model/best.pt          best checkpoint (validation NDCG@20); model/train_state.pt resume state
        metrics.json           validation and test metrics + training summary (marks the round done)
    item_tokens.txt            item id -> original item token (line i = id i)
    results.json               every round's row + the popularity baseline

Re-running the same command continues from the last completed step.
"""
import logging
import os
import time

import numpy as np
import torch

from .. import config as C
from .. import data as D
from .. import host, models
from . import training
from ..analysis.stats import apen_summary, synthetic_diagnostics
from ..atomic import atomic_path, read_json, write_json, write_text
from .heuristics import augment_rows
from ..errors import UserError
from .generation import GenConfig, GenStats, ModelScorer, filter_sequences, generate_batched, predraw

log = logging.getLogger('recstudio_rsir')

METRICS = ('ndcg@10', 'ndcg@20', 'recall@10', 'recall@20')


def dataset_label(spec):
    """A short name for a dataset spec in default folder names (``Beauty`` for ``.../Beauty.txt.gz``)."""
    return os.path.basename(str(spec)).split('.')[0]


def default_output(cfg):
    ds = dataset_label(cfg['dataset'])
    return os.path.join('runs', f"{cfg['model_name']}-{ds}-{cfg['augment']}-seed{cfg['train']['seed']}")


def resolve_device(name):
    if str(name).startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'--device {name}: CUDA is not available on this machine; use --device cpu')
    return torch.device(name)


def save_sequences(path, seqs, origin):
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    items = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, items=items, offsets=offsets, origin=np.asarray(origin, dtype=np.int64))


def load_sequences(path):
    """(rows, origins) of a ``synthetic.npz``."""
    z = np.load(path)
    items, offsets = z['items'], z['offsets']
    origin = z['origin'].tolist() if 'origin' in z.files else None      # older runs kept no origins
    return [items[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])], origin


class Experiment:
    """One dataset + one backbone + one config: builds splits and models through the host layer."""

    def __init__(self, cfg, out):
        self.cfg = cfg
        self.out = out
        self.device = resolve_device(cfg['train']['device'])
        self.max_seq_len = int(cfg['data']['max_seq_len'])
        name, folder, self.dataset_desc = D.resolve_dataset(str(cfg['dataset']), os.path.join(out, 'dataset'))
        self.model_cls, self.host_conf = models.resolve(cfg['model_name'])
        regime = cfg['train']['regime']
        import recstudio.data.dataset as rds
        base = rds.SeqToSeqDataset if regime == 'user' else self.model_cls._get_dataset_class()
        dconf = host.dataset_config(name, folder, self.max_seq_len)
        self.pristine = host.load_dataset(host.training_only_class(base), name, dconf, os.path.join(out, 'dataset'))
        self.num_items = self.pristine.num_items
        uids, seqs = host.user_sequences(self.pristine)
        self.real_train = [s[:-2] for s in seqs if len(s) >= 3]
        write_text(os.path.join(out, 'item_tokens.txt'),
                   '\n'.join(map(str, self.pristine.field2tokens[self.pristine.fiid])) + '\n')

    def splits(self, synthetic):
        return host.build(self.pristine, synthetic)

    def new_model(self, train_data, model_cfg=None):
        t = self.cfg['train']
        hc = host.merge_host_config(self.host_conf, model_cfg if model_cfg is not None else self.cfg['model'], t,
                                    self.max_seq_len)
        key = 'negative_count'
        if host.is_nested(hc):
            hc['model'][key] = t['negative_count']
        else:
            hc[key] = t['negative_count']
        return host.construct(self.model_cls, hc, train_data, self.device)


def train_stats(real, synthetic, num_items):
    """Paper Table 4 for one round's training rows: the synthetic rows belong to the users whose
    rows they came from, so density = interactions / (users x items) with users = real rows."""
    rows = list(real) + list(synthetic)
    st = D.sequence_stats(rows, num_items=num_items - 1, users=len(real))
    st.update({'real_sequences': len(real), 'synthetic_sequences': len(synthetic),
               'synthetic_interactions': sum(map(len, synthetic))})
    st.update(apen_summary(rows))
    return st


def run(cfg, progress=True):
    """Run plain training (augment none: round 0 only) or the RSIR loop; returns results dict."""
    out = cfg['output'] or default_output(cfg)
    cfg['output'] = out
    check_output_folder(cfg, out)
    os.makedirs(out, exist_ok=True)
    threads = cfg['train']['num_threads'] or os.cpu_count()
    torch.set_num_threads(int(threads))
    write_text(os.path.join(out, 'config.yaml'), C.dump(cfg))
    t_all = time.time()
    ex = Experiment(cfg, out)
    rounds = int(cfg['rsir']['rounds']) if cfg['augment'] != 'none' else 0
    tau = C.tau_value(cfg['rsir'])
    gcfg = GenConfig.from_rsir(cfg['rsir'], ex.max_seq_len, tau)
    log.info('dataset: %s (%d users, %d items); model %s; %s; device %s', ex.dataset_desc, len(ex.real_train),
             ex.num_items - 1, cfg['model_name'],
             f"{cfg['augment']} {rounds} round(s)" if cfg['augment'] != 'none' else 'no augmentation',
             ex.device)

    synthetic = []
    rows = []
    prev_model = None
    pop = None
    teacher = Teacher(cfg, out, ex, progress) if C.uses_teacher(cfg) else None
    for k in range(rounds + 1):
        rdir = os.path.join(out, f'round_{k}')
        os.makedirs(rdir, exist_ok=True)
        gen_path = os.path.join(rdir, 'synthetic.npz')
        gen_info = None
        if k > 0:
            if os.path.exists(gen_path) and os.path.exists(os.path.join(rdir, 'generation.json')):
                new, _ = load_sequences(gen_path)
                gen_info = read_json(os.path.join(rdir, 'generation.json'))
            else:
                sources = ex.real_train + (synthetic if cfg['rsir']['generate_from'] == 'all' else [])
                if cfg['augment'] == 'rsir':
                    gen_model = teacher.model_for(k - 1, synthetic) if teacher else prev_model
                    new, origin, gen_info = generate_round(ex, gen_model, sources, synthetic, gcfg, k, progress)
                    gen_info['generator'] = teacher.name if teacher else cfg['model_name']
                else:
                    new, origin, gen_info = heuristic_round(ex, sources, synthetic, cfg, k)
                gen_info['diagnostics'] = synthetic_diagnostics(new, [sources[i] for i in origin], ex.real_train,
                                                                ex.num_items)
                save_sequences(gen_path, new, origin)
                write_json(os.path.join(rdir, 'generation.json'), gen_info)
            log.info(gen_info['summary'])
            synthetic = synthetic + new
        train, val, test = ex.splits(synthetic)
        stats = train_stats(ex.real_train, synthetic, ex.num_items)
        write_json(os.path.join(rdir, 'train_stats.json'), stats)
        if pop is None:
            pop = {'val': training.evaluate_popularity(ex.real_train, val, ex.num_items),
                   'test': training.evaluate_popularity(ex.real_train, test, ex.num_items)}
        model, res = train_or_load(ex, (train, val, test), rdir, k, progress)
        rows.append({'round': k, 'train_sequences': stats['sequences'], 'interactions': stats['interactions'],
                     'density': stats['density'], 'apen': stats['apen'], 'apen_reciprocal': stats['apen_reciprocal'],
                     **{m: res['test'][m] for m in METRICS},
                     'val': {m: res['val'][m] for m in METRICS},
                     'generation': gen_info, 'train_seconds': res['train']['train_seconds'],
                     'epochs_run': res['train']['epochs_run'], 'best_epoch': res['train']['best_epoch']})
        prev_model = model
    base = rows[0]
    for r in rows:
        r['change_vs_round0'] = {m: (r[m] - base[m]) / base[m] if base[m] else 0.0 for m in METRICS}
    results = {'model': cfg['model_name'], 'dataset': ex.dataset_desc, 'augment': cfg['augment'],
               'fidelity': cfg['rsir']['fidelity'] if cfg['augment'] == 'rsir' else None,
               'seed': cfg['train']['seed'], 'device': str(ex.device), 'flavour': host.flavour(),
               'popularity': pop, 'rounds': rows, 'wall_seconds': time.time() - t_all}
    write_json(os.path.join(out, 'results.json'), results)
    return results


# options that may change when a run is continued in the same folder
RESUMABLE_CHANGES = {('rsir', 'rounds'), ('train', 'num_threads'), ('train', 'device'), ('output',)}


def check_output_folder(cfg, out):
    """Refuse to continue a run in ``out`` that was made with another config (its checkpoints and
    synthetic rows belong to that config).  More rounds, threads or another device are fine."""
    path = os.path.join(out, 'config.yaml')
    if not os.path.exists(path):
        return
    old = C.load_yaml(path)
    for key in ('model_name', 'dataset', 'augment', 'output') + C.GROUPS:
        a, b = old.get(key), cfg.get(key)
        if not isinstance(b, dict):
            pairs = [((key,), a, b, key in old)]
        else:
            a = a or {}
            pairs = [((key, k), a.get(k), b.get(k), k in a) for k in sorted(set(a) | set(b))]
        for where, x, y, recorded in pairs:
            if not recorded and key in C.DEFAULTS and isinstance(C.DEFAULTS[key], dict):
                x = C.DEFAULTS[key].get(where[-1], x)      # an option added later: the old run had its default
            if x != y and where not in RESUMABLE_CHANGES:
                raise UserError(f"--output {out}: it holds a run with {'.'.join(where)} = {x!r}, not {y!r}; "
                                'use another --output folder or delete this one')


def train_or_load(ex, splits, rdir, k, progress, label=None):
    """Train a new model of ``ex``'s backbone on ``splits`` into ``rdir`` (or load it when
    ``rdir/metrics.json`` says it is done); returns (model with its best weights, metrics dict)."""
    train, val, test = splits
    metrics_path = os.path.join(rdir, 'metrics.json')
    model = ex.new_model(train)
    if os.path.exists(metrics_path):
        res = read_json(metrics_path)
        model.load_state_dict(training.load_checkpoint(res['checkpoint'])['model'])
        return model, res
    label = label or f'round {k}'

    def show(rec):
        if progress:
            v = ' '.join(f'{m}={rec["val_" + m]:.4f}' for m in ('ndcg@20', 'recall@20') if 'val_' + m in rec)
            print(f'  {label} epoch {rec["epoch"]:3d} loss {rec["loss"]:.4f} {v} ({rec["seconds"]:.1f}s)', flush=True)
    summary = training.fit(model, train, val, ex.cfg['train'], os.path.join(rdir, 'model'), ex.device, show)
    ebs = ex.cfg['train']['eval_batch_size']
    res = {'round': k, 'model': ex.cfg['model_name'],
           'val': training.evaluate(model, val, ex.num_items, ebs, ex.device),
           'test': training.evaluate(model, test, ex.num_items, ebs, ex.device),
           'train': {kk: v for kk, v in summary.items() if kk != 'history'},
           'history': summary['history'],
           'checkpoint': summary['checkpoint']}
    write_json(metrics_path, res)
    return model, res


def check_teacher(cfg):
    """One-line errors for a teacher backbone that does not exist or a checkpoint that is missing."""
    r = cfg['rsir']
    if r.get('teacher_ckpt') and not os.path.isfile(r['teacher_ckpt']):
        raise UserError(f"--rsir.teacher_ckpt {r['teacher_ckpt']}: no such file (expected a model/best.pt of an "
                        'earlier run)')
    if r.get('teacher'):
        try:
            models.resolve(r['teacher'])
        except UserError as e:
            raise UserError(f"--rsir.teacher {r['teacher']}: " + str(e).split(': ', 1)[1])


class Teacher:
    """The generating backbone when it differs from the trained one (``rsir.teacher``; weak-to-strong).

    Round k's data is generated by a teacher trained on the same rows as the student of round k-1
    (real rows + the synthetic rows of rounds < k), stored in ``round_<k-1>/teacher/``.  With
    ``rsir.teacher_ckpt`` the round-1 generator is that checkpoint instead (a ``best.pt`` of a
    model of the teacher backbone trained on this dataset).
    """

    def __init__(self, cfg, out, student_ex, progress):
        self.name = cfg['rsir']['teacher'] or cfg['model_name']
        self.ckpt = cfg['rsir']['teacher_ckpt']
        self.progress = progress
        check_teacher(cfg)
        tcfg = C.teacher_config(cfg)
        self.ex = Experiment(tcfg, out)
        if self.ex.num_items != student_ex.num_items or self.ex.real_train != student_ex.real_train:
            raise UserError(f'--rsir.teacher {self.name}: its dataset build differs from the student\'s '
                            '(item ids or training rows); use the same train.regime for both')
        self.out = out

    def model_for(self, j, synthetic):
        """The teacher trained on round j's rows (``synthetic``: every synthetic row of rounds <= j)."""
        train, val, test = self.ex.splits(synthetic)
        if j == 0 and self.ckpt:
            model = self.ex.new_model(train)
            try:
                state = training.load_checkpoint(self.ckpt)
                model.load_state_dict(state['model'])
            except (OSError, KeyError, RuntimeError) as e:
                raise UserError(f'--rsir.teacher_ckpt {self.ckpt}: not a checkpoint of {self.name} on this dataset '
                                f'({str(e).splitlines()[0][:200]})')
            return model
        tdir = os.path.join(self.out, f'round_{j}', 'teacher')
        os.makedirs(tdir, exist_ok=True)
        model, _ = train_or_load(self.ex, (train, val, test), tdir, j, self.progress, label=f'teacher {self.name} round {j}')
        return model


def generate_round(ex, model, sources, synthetic, gcfg, k, progress):
    """Round ``k``'s RSIR sequences from ``model`` (best checkpoint of round k-1) and ``sources``.
    Returns (rows, origin indices into ``sources``, generation summary)."""
    g = GenConfig(**{**gcfg.__dict__, 'seed': gcfg.seed + 1000 * k})
    scorer = ModelScorer(model, ex.num_items, ex.max_seq_len, ex.pristine.fiid)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(sources) * g.m, desc=f'round {k} generation', unit='traj', leave=False)
    draws = predraw(sources, g)
    trajectories, stats = generate_batched(scorer, sources, g, draws, progress=bar.update if bar else None)
    if bar:
        bar.close()
    kept, origin = filter_sequences(trajectories, [t // g.m for t in range(len(trajectories))], sources,
                                    draws.prefix.tolist(), ex.real_train + synthetic, g.min_len, stats)
    info = dict(stats.__dict__)
    info['acceptance_rate'] = stats.accepted / stats.steps_tried if stats.steps_tried else 0.0
    info['own_history_share'] = stats.own_history_share()
    info['config'] = dict(g.__dict__, tau=str(g.tau) if not np.isfinite(g.tau) else g.tau)
    info['summary'] = f'round {k} ' + stats.summary_line()
    return kept, origin, info


def heuristic_round(ex, sources, synthetic, cfg, k):
    """Round ``k``'s reordered or inserted copies of ``sources`` (see :mod:`recstudio_rsir.augment`),
    filtered like RSIR's (length >= rsir.min_len, no duplicate of a training row)."""
    t0 = time.time()
    kind = cfg['augment']
    max_len = int(cfg['rsir']['max_len'] or ex.max_seq_len)
    rows, origin = augment_rows(kind, sources, ex.real_train, ex.num_items, cfg['aug'], max_len, k)
    stats = GenStats(sources=len(sources), trajectories=len(rows))
    kept, kept_origin = filter_sequences(rows, origin, sources, [0] * len(rows), ex.real_train + synthetic,
                                         int(cfg['rsir']['min_len']), stats)
    stats.seconds = time.time() - t0
    info = dict(stats.__dict__)
    info['own_history_share'] = stats.own_history_share()
    info['config'] = {'augment': kind, **cfg['aug'], 'seed': int(cfg['aug']['seed']) + 1000 * k}
    info['summary'] = (f'round {k} {kind}: {len(sources)} sources, {len(rows)} copies; kept {stats.kept} '
                       f'({stats.dropped_short} too short, {stats.dropped_duplicate} duplicates), mean length '
                       f'{stats.mean_length:.2f} [{stats.seconds:.1f}s]')
    return kept, kept_origin, info


def format_table(results):
    head = f"{'round':>5} {'#train seq':>10} {'#inter':>9} {'density':>9} " + \
        ' '.join(f'{m:>9}' for m in ('NDCG@10', 'NDCG@20', 'Recall@10', 'Recall@20')) + f" {'ΔNDCG@10':>9}"
    lines = [head, '-' * len(head)]
    pop = results['popularity']['test']
    lines.append(f"{'pop':>5} {'':>10} {'':>9} {'':>9} " + ' '.join(f'{pop[m]:9.4f}' for m in METRICS) + f" {'':>9}")
    for r in results['rounds']:
        lines.append(f"{r['round']:>5} {r['train_sequences']:>10} {r['interactions']:>9} {r['density']:9.5f} " +
                     ' '.join(f'{r[m]:9.4f}' for m in METRICS) + f" {r['change_vs_round0']['ndcg@10']:+9.2%}")
    return '\n'.join(lines)
