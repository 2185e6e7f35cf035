"""The self-improving loop: plain training (``augment: none``: round 0 only), or K rounds in which
an augmenter (:mod:`.augmenters`: RSIR, Reordering, Insertion or a registered one) adds
training-only rows from the model of the previous round and a fresh model is trained on them.

The output folder's files are defined in :class:`recstudio_rsir.records.RunLayout`; every file is
written under a temporary name, then renamed.  Re-running the same command continues from the
last completed step.
"""
import logging
import os
import time

import torch

from .. import config as C
from .. import data as D
from .. import distributed, host, models
from . import training
from ..analysis.stats import apen_summary, synthetic_diagnostics
from ..atomic import check_digest, file_digest, read_json, write_json, write_text
from ..data import load_sequences, save_sequences   # noqa: F401 - also loop's public names
from ..errors import UserError
from ..records import METRICS, RoundResult, RunLayout, RunResult, SuiteLayout
from .augmenters import AugmentContext, check_output, get_augmenter
from .gen_checkpoint import discard_progress
from .generation import GenStats, filter_sequences

log = logging.getLogger('recstudio_rsir')



def dataset_label(spec):
    """A short name for a dataset spec in default folder names (``Beauty`` for ``.../Beauty.txt.gz``)."""
    return os.path.basename(str(spec)).split('.')[0]


def default_output(cfg):
    ds = dataset_label(cfg['dataset'])
    return os.path.join('runs', f"{cfg['model_name']}-{ds}-{cfg['augment']}-seed{cfg['train']['seed']}")


def resolve_device(name):
    if str(name).startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'--device {name}: CUDA is not available on this machine; use --device cpu')
    return str(name)


class Experiment:
    """One dataset + one backbone + one config: builds splits and models through the host layer."""

    def __init__(self, cfg, out):
        self.cfg = cfg
        self.out = out
        self.dist, self.device = distributed.setup(resolve_device(cfg['train']['device']))
        if not self.dist.is_main:
            self.dist.barrier()          # rank 0 converts the data and checks the options first
        self.max_seq_len = int(cfg['data']['max_seq_len'])
        name, folder, self.dataset_desc = D.resolve_dataset(str(cfg['dataset']), RunLayout(out).dataset_dir,
                                                             host.named_dataset_file)
        self.model_cls, self.host_conf = models.resolve(cfg['model_name'])
        base = host.dataset_base_class(cfg['train']['regime'], self.model_cls)
        dconf = host.dataset_config(name, folder, self.max_seq_len)
        self.pristine = host.load_dataset(host.training_only_class(base), name, dconf, os.path.join(out, 'dataset'))
        self.num_items = self.pristine.num_items
        uids, seqs = host.user_sequences(self.pristine)
        self.real_train = [s[:-2] for s in seqs if len(s) >= 3]
        # the backbone's options are judged by building it once, before anything is written; the round-0
        # splits built for that are kept for round 0 (a build deep-copies the dataset: ~5 min at 1M users)
        self._round0 = None
        round0 = self.splits([])
        models.check_model_builds(lambda: self.new_model(round0[0]), cfg['model_name'], cfg['model'])
        self._round0 = round0
        write_text(RunLayout(out).item_tokens,
                   '\n'.join(map(str, self.pristine.field2tokens[self.pristine.fiid])) + '\n')
        if self.dist.is_main:
            self.dist.barrier()

    def splits(self, synthetic):
        """(train, val, test) of the real rows plus ``synthetic`` training-only rows, built fresh from
        ``pristine``; the first call without synthetic rows gets the build made for the trial model (each
        build is handed out once: training deletes columns from its tables)."""
        cached, self._round0 = self._round0, None
        if cached is not None and not synthetic:
            return cached
        del cached                       # freed before the next build, not after: it is the size of the data
        return host.build(self.pristine, synthetic)

    def new_model(self, train_data, model_cfg=None):
        t = self.cfg['train']
        hc = host.merge_host_config(self.host_conf, model_cfg if model_cfg is not None else self.cfg['model'], t,
                                    self.max_seq_len)
        host.set_model_option(hc, 'negative_count', t['negative_count'])
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


PLATEAU_RATIO = 1.5     # a model below this multiple of popularity's validation NDCG@20 gets a hint


def plateau_hint(k, metrics, pop_val):
    """One line when round ``k``'s model (``metrics``: its ``metrics.json`` dict) is hardly better than
    the popularity baseline on validation (NDCG@20 below ``PLATEAU_RATIO`` x popularity's), else None.

    Sequential models often sit at popularity level for a number of optimizer steps before they learn
    the order; early stopping counts epochs, and on a small dataset an epoch is few steps (the embedded
    dataset: 15 at batch 256, Beauty: 87), so a short patience can stop on that plateau."""
    m, p = metrics['val']['ndcg@20'], pop_val['ndcg@20']
    if not p > 0 or m >= PLATEAU_RATIO * p:
        return None
    t = metrics.get('train', {})
    return (f"round {k}: validation NDCG@20 {m:.4f} is below {PLATEAU_RATIO}x popularity's ({p:.4f}); best epoch "
            f"{t.get('best_epoch', '?')} of {t.get('epochs_run', '?')}: training may have stopped on an early "
            'plateau; a larger train.patience or train.learning_rate, or a smaller train.batch_size (more steps '
            'per epoch), lets it leave one')


def run(cfg, progress=True, callbacks=(), experiment=None):
    """Plain training (augment none: round 0 only) or the self-improving loop with the configured
    augmenter; returns a :class:`~recstudio_rsir.records.RunResult` (also written to ``results.json``).

    ``callbacks``: callables ``f(round_result)`` called at the end of every round (also for a round
    found finished in the folder on resume).  ``experiment``: an :class:`Experiment` already built
    for ``cfg`` (the trainer passes its own so that models can be loaded afterwards).
    """
    out = cfg['output'] or default_output(cfg)
    cfg['output'] = out
    lay = RunLayout(out)
    check_output_folder(cfg, out)
    aug = get_augmenter(cfg['augment']) if cfg['augment'] != 'none' else None
    os.makedirs(out, exist_ok=True)
    t_all = time.time()
    ex = experiment or Experiment(cfg, out)          # reads and checks the data first
    dist = ex.dist
    progress = progress and dist.is_main             # one process prints
    write_text(lay.config, C.dump(cfg))              # then the config that later runs are checked against
    rounds = C.rounds_asked(cfg)
    log.info('dataset: %s (%d users, %d items); model %s; %s; device %s', ex.dataset_desc, len(ex.real_train),
             ex.num_items - 1, cfg['model_name'],
             f"{cfg['augment']} {rounds} round(s)" if aug is not None else 'no augmentation', ex.device)

    synthetic = []
    rows = []
    prev_model = None
    pop = None
    teacher = Teacher(cfg, out, ex, progress) if aug is not None and aug.uses_model and C.uses_teacher(cfg) else None
    for k in range(rounds + 1):
        dist.barrier()                               # every rank sees the folder as rank 0 left it
        os.makedirs(lay.round_dir(k), exist_ok=True)
        gen_info = None
        if k > 0:
            if os.path.exists(lay.generation(k)):
                gen_info = read_json(lay.generation(k))
            if gen_info is not None and os.path.exists(lay.synthetic(k)):   # else (re)generated below
                if 'artifacts' in gen_info:                # runs written before the records have none
                    check_digest(lay.synthetic(k), gen_info['artifacts']['synthetic.npz'], lay.generation(k),
                                 f'delete {lay.round_dir(k)} (and later rounds) and re-run the command to generate '
                                 'its rows again')
                new, _ = load_sequences(lay.synthetic(k))
            else:
                sources = ex.real_train + (synthetic if cfg['rsir']['generate_from'] == 'all' else [])
                gen_model = None
                if aug.uses_model:
                    gen_model = teacher.model_for(k - 1, synthetic) if teacher else prev_model
                    gen_model.eval()
                new, origin, gen_info = augment_round(aug, ex, gen_model, sources, synthetic, k, progress,
                                                      resume_dir=lay.generation_progress(k))
                if aug.uses_model:
                    gen_info['generator'] = teacher.name if teacher else cfg['model_name']
                gen_info['diagnostics'] = synthetic_diagnostics(new, [sources[i] for i in origin], ex.real_train,
                                                                ex.num_items)
                save_sequences(lay.synthetic(k), new, origin)
                gen_info['artifacts'] = dist.on_main(lambda: {'synthetic.npz': file_digest(lay.synthetic(k))})
                write_json(lay.generation(k), gen_info)
                if dist.is_main:
                    discard_progress(lay.generation_progress(k))   # the rows are written
            log.info(gen_info.get('summary') or f'round {k} {cfg["augment"]}: kept {len(new)} rows')
            synthetic = synthetic + new
        train, val, test = ex.splits(synthetic)
        stats = train_stats(ex.real_train, synthetic, ex.num_items)
        write_json(lay.train_stats(k), stats)
        if pop is None:
            pop = {'val': training.evaluate_popularity(ex.real_train, val, ex.num_items),
                   'test': training.evaluate_popularity(ex.real_train, test, ex.num_items)}
        model, res = train_or_load(ex, (train, val, test), lay.round_dir(k), k, progress,
                                   tensorboard=lay.tensorboard(k), rows=ex.real_train + synthetic)
        hint = plateau_hint(k, res, pop['val'])
        if hint and dist.is_main:
            log.warning(hint)
        rr = RoundResult.of_round(k, res, stats, gen_info, base=rows[0] if rows else None, layout=lay)
        rows.append(rr)
        for cb in callbacks:
            cb(rr)
        prev_model = model
    results = RunResult(model=cfg['model_name'], dataset=ex.dataset_desc, augment=cfg['augment'],
                        fidelity=cfg['rsir']['fidelity'] if cfg['augment'] == 'rsir' else None,
                        seed=cfg['train']['seed'], device=str(ex.device), flavour=host.flavour(), popularity=pop,
                        rounds=rows, wall_seconds=time.time() - t_all, output=out, processes=dist.world)
    write_json(lay.results, results.to_dict())
    return results


def augment_round(aug, ex, model, sources, synthetic, k, progress, resume_dir=None):
    """Round ``k``'s new rows from augmenter ``aug``: (rows, origin indices into ``sources``, info).
    Rows of augmenters that do not filter themselves go through the same filter as RSIR's
    (length >= rsir.min_len, no duplicate of each other or of a training row).  ``resume_dir``:
    where the augmenter may keep its progress (:class:`AugmentContext`)."""
    cfg = ex.cfg
    ctx = AugmentContext(round=k, sources=sources, real_train=ex.real_train, existing=ex.real_train + synthetic,
                         num_items=ex.num_items, max_len=int(cfg['rsir']['max_len'] or ex.max_seq_len), config=cfg,
                         seed=int(cfg['aug']['seed']) + 1000 * k, model=model, device=ex.device,
                         fiid=ex.pristine.fiid, progress=progress, dist=ex.dist, resume_dir=resume_dir)
    t0 = time.time()
    out = check_output(cfg['augment'], aug.augment(ctx), ctx)
    info = dict(out.info)
    if not out.filtered:
        stats = GenStats(sources=len(sources), trajectories=len(out.rows))
        kept, origin = filter_sequences(out.rows, out.origin, sources, [0] * len(out.rows), ctx.existing,
                                        int(cfg['rsir']['min_len']), stats)
        stats.seconds = time.time() - t0
        info = {**stats.__dict__, **info}
        info.setdefault('summary', f"round {k} {cfg['augment']}: {len(sources)} sources, {len(out.rows)} rows; kept "
                                   f"{stats.kept} ({stats.dropped_short} too short, {stats.dropped_duplicate} "
                                   f"duplicates) [{stats.seconds:.1f}s]")
        return kept, origin, info
    return out.rows, out.origin, info


# options that may change when a run is continued in the same folder
RESUMABLE_CHANGES = {('rsir', 'rounds'), ('train', 'num_threads'), ('train', 'device'), ('output',),
                     ('rsir', 'kv_cache'), ('train', 'save_every_s')}     # the same rows and models either way


def check_output_folder(cfg, out):
    """Refuse to continue a run in ``out`` that was made with another config (its checkpoints and
    synthetic rows belong to that config).  More rounds, threads or another device are fine."""
    path = RunLayout(out).config
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


def train_or_load(ex, splits, rdir, k, progress, label=None, tensorboard=None, rows=None):
    """Train a new model of ``ex``'s backbone on ``splits`` into ``rdir`` (or load it when
    ``rdir/metrics.json`` says it is done); returns (model with its best weights, metrics dict).
    ``tensorboard``: a folder for per-epoch loss and validation metrics (TensorBoard event files).

    ``rows``: the training rows behind ``splits`` (real + synthetic).  Their hash is recorded with
    the model (in ``train_state.pt`` while training, in ``metrics.json`` after), as is the
    checkpoint's size + hash; on resume or load a model whose rows or checkpoint changed since is a
    one-line error naming the file, never a result mixing one model's metrics with other rows.
    """
    train, val, test = splits
    metrics_path = os.path.join(rdir, 'metrics.json')
    data = {'train_rows': len(rows), 'rows_sha256': D.rows_digest(rows)} if rows is not None else None
    model = ex.new_model(train)
    redo = f'delete {rdir} (and later rounds) and re-run the command to train it again'
    if os.path.exists(metrics_path):
        res = read_json(metrics_path)
        if data is not None and res.get('data', data) != data:
            raise UserError(f"{metrics_path}: its model was trained on {res['data']['train_rows']} rows that differ "
                            f"from the {data['train_rows']} rows this folder's files give now (a synthetic.npz or the "
                            f'converted data changed); {redo}')
        ckpt = checkpoint_path(rdir, res)
        if 'checkpoint_digest' in res:
            check_digest(ckpt, res['checkpoint_digest'], metrics_path, redo)
        model.load_state_dict(training.load_checkpoint(ckpt)['model'])
        return model, res
    label = label or f'round {k}'
    board = _Board(tensorboard if ex.dist.is_main else None)

    def show(rec):
        board.add(rec)
        if progress:
            v = ' '.join(f'{m}={rec["val_" + m]:.4f}' for m in ('ndcg@20', 'recall@20') if 'val_' + m in rec)
            print(f'  {label} epoch {rec["epoch"]:3d} loss {rec["loss"]:.4f} {v} ({rec["seconds"]:.1f}s)', flush=True)
    try:
        summary = training.fit(model, train, val, ex.cfg['train'], os.path.join(rdir, 'model'), ex.device, show,
                               data=data, dist=ex.dist, synthetic_weight=float(ex.cfg['rsir']['synthetic_weight']))
    finally:
        board.close()
    ebs = ex.cfg['train']['eval_batch_size']
    res = {'round': k, 'model': ex.cfg['model_name'],
           'val': training.evaluate(model, val, ex.num_items, ebs, ex.device, dist=ex.dist),
           'test': training.evaluate(model, test, ex.num_items, ebs, ex.device, dist=ex.dist),
           'train': {kk: v for kk, v in summary.items() if kk != 'history'},
           'history': summary['history'],
           'checkpoint_in_round': os.path.relpath(summary['checkpoint'], rdir),
           'checkpoint_digest': file_digest(summary['checkpoint']),
           'environment': host.environment(ex.device)}
    if data is not None:
        res['data'] = data
    write_json(metrics_path, res)
    return model, res


def checkpoint_path(rdir, metrics):
    """The checkpoint of the ``metrics.json`` dict ``metrics`` found in round folder ``rdir``.

    ``checkpoint_in_round`` is relative to the round folder, so a moved or copied run folder loads its
    own weights.  Files written by versions before it hold ``checkpoint``: the path as the writing
    process saw it (absolute, or relative to its working directory); it is used when it lies inside
    this run's folder, else its tail (``.../round_k/model/best.pt``) is looked up inside it.

    The path must stay inside the run folder (or, for a suite's round 0 shared with its base run,
    inside the suite folder): a ``metrics.json`` naming a file elsewhere is a one-line error.
    """
    if 'checkpoint_in_round' in metrics:
        return _confined(os.path.normpath(os.path.join(rdir, metrics['checkpoint_in_round'])), rdir)
    old = metrics['checkpoint']
    allowed = _run_tree(rdir)
    if not (os.path.isabs(old) and _inside(old, allowed)):
        parts = os.path.normpath(old).split(os.sep)    # the writer's path: absolute (folder moved or copied
        for i in range(len(parts)):                     # since) or relative to its working directory; find
            cand = os.path.join(allowed, *parts[i:])    # its tail inside this run's folder
            if parts[i:] and os.path.isfile(cand):
                return cand
    return _confined(old, rdir, allowed)


def _run_tree(rdir):
    """The folder a round folder's checkpoints must lie in: the run folder (the nearest folder above
    ``rdir`` with a ``config.yaml``), or that run's suite folder (two levels up, with a ``suite.json``)."""
    run = os.path.abspath(rdir)
    while not os.path.isfile(RunLayout(run).config) and os.path.dirname(run) != run:
        run = os.path.dirname(run)
    suite = os.path.dirname(os.path.dirname(run))
    return suite if os.path.isfile(SuiteLayout(suite).suite) else run


def _inside(path, folder):
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, top]) == top


def _confined(path, rdir, allowed=None):
    """``path`` if it lies inside ``allowed`` (default :func:`_run_tree` of round folder ``rdir``), else a
    one-line UserError."""
    allowed = allowed or _run_tree(rdir)
    if not _inside(path, allowed):
        raise UserError(f"{os.path.join(rdir, 'metrics.json')}: its checkpoint {path} lies outside the run folder "
                        f'{allowed}; delete {rdir} and re-run the command to train it again')
    return path


class _Board:
    """TensorBoard event files for one model's training: ``train/loss`` (and ``train/aux_loss``)
    and ``val/<metric>`` per epoch.  A no-op when no folder is given or tensorboard is missing."""

    def __init__(self, folder):
        self.writer = None
        if folder:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:          # tensorboard is a declared dependency; keep training without it
                return
            self.writer = SummaryWriter(folder)

    def add(self, rec):
        if self.writer is None:
            return
        step = rec['epoch']
        self.writer.add_scalar('train/loss', rec['loss'], step)
        if 'aux_loss' in rec:
            self.writer.add_scalar('train/aux_loss', rec['aux_loss'], step)
        for key, v in rec.items():
            if key.startswith('val_'):
                self.writer.add_scalar('val/' + key[4:], v, step)
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()


def check_teacher(cfg):
    """One-line errors for a teacher backbone that does not exist or a checkpoint that is missing."""
    r = cfg['rsir']
    if r.get('teacher_ckpt'):
        if not os.path.isfile(r['teacher_ckpt']):
            raise UserError(f"--rsir.teacher_ckpt {r['teacher_ckpt']}: no such file (expected a model/best.pt of an "
                            'earlier run)')
        state = training.load_checkpoint(r['teacher_ckpt'])         # weights only: refused before anything runs
        if not isinstance(state, dict) or not isinstance(state.get('model'), dict):
            raise UserError(f"--rsir.teacher_ckpt {r['teacher_ckpt']}: not a model/best.pt of this plugin (no "
                            '`model` weights)')
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
        lay = RunLayout(self.out)
        tdir = lay.teacher_dir(j)
        os.makedirs(tdir, exist_ok=True)
        model, _ = train_or_load(self.ex, (train, val, test), tdir, j, self.progress,
                                 label=f'teacher {self.name} round {j}', tensorboard=lay.tensorboard(j, '_teacher'),
                                 rows=self.ex.real_train + synthetic)
        return model


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
