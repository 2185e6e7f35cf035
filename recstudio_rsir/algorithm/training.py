"""Training and evaluation of one model: a loop that reads top to bottom, resumable per epoch.

Two training regimes (``train.regime``):

* ``prefix`` -- RecStudio's own: the model's dataset class (one row per prefix for SASRec) and the
  model's own loss (``model.training_step``; SASRec: BCE with one sampled negative).
* ``user``   -- the RSIR authors': one row per user (``SeqToSeqDataset``), every position supervised,
  sampled softmax over ``num_negatives`` uniform negatives that exclude the user's items.

Evaluation is leave-one-out with full ranking over all items, the user's history excluded
(RecStudio's ``user_hist``: training items for validation, training+validation items for test),
NDCG@K and Recall@K.  It is the same code on both RecStudio flavours.

Checkpoint dict (``<dir>/train_state.pt``, written atomically after every epoch and, every
``train.save_every_s`` seconds, inside one)::

    {'epoch', 'model', 'optimizer', 'best_score', 'best_epoch', 'bad_epochs', 'history',
     'rng': {'torch', 'numpy', 'python', 'cuda', 'negatives'}, 'seconds', 'complete', 'data',
     'in_epoch': None | {'epoch', 'batches', 'rng_start', 'loss', 'aux_loss', 'trained', 'seconds'}}

``epoch`` is the last finished epoch.  A state saved inside an epoch also holds ``in_epoch``: that
epoch, how many loader batches it had consumed, the RNG states at its start (they give the loader the
same shuffle again), its running loss sums and seconds; ``model``, ``optimizer`` and ``rng`` are then
those after that batch.  Resuming replays the loader to that batch and goes on, so the result equals an
uninterrupted run's.  The best weights are in ``<dir>/best.pt``.
"""
import logging
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import host
from ..errors import UserError
from ..records import BEST_CHECKPOINT, TRAIN_STATE
from ..atomic import atomic_path
from ..distributed import SINGLE

log = logging.getLogger('recstudio_rsir')

KS = (10, 20)


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def rank_metrics(scores, target, ks=KS):
    """Per-row NDCG@k and Recall@k of one target item.

    Args:
        scores: ``[B, N]`` scores over item ids (history already set to -inf).
        target: ``[B]`` target item ids.
    Returns:
        dict metric -> ``[B]`` float tensor.  rank = 1 + #items scored strictly higher.
    """
    t = scores.gather(1, target.view(-1, 1))
    rank = (scores > t).sum(1) + 1
    hit_ok = torch.isfinite(t.view(-1))
    out = {}
    for k in ks:
        hit = (rank <= k) & hit_ok
        out[f'recall@{k}'] = hit.float()
        out[f'ndcg@{k}'] = torch.where(hit, 1.0 / torch.log2(rank.float() + 1.0),
                                       torch.zeros_like(rank, dtype=torch.float))
    return out


def mask_history(scores, user_hist):
    """Set the scores of ``user_hist`` ``[B, H]`` (0-padded item ids) to -inf, in place."""
    scores.scatter_(1, user_hist.long(), float('-inf'))
    return scores


@torch.no_grad()
def evaluate(model, dataset, num_items, batch_size=256, device='cpu', ks=KS, dist=SINGLE, max_users=None):
    """Full-ranking leave-one-out metrics of ``model`` on a RecStudio val/test split.  With several
    processes (``dist``) the batches are dealt out over the ranks and the sums all-reduced; every
    rank returns the same numbers.  ``max_users``: stop after the batch that reaches it (benchmarks)."""
    was_training = model.training
    model.eval()
    item_vecs = host.item_vectors(model, num_items)
    sums, n = {f'{m}@{k}': 0.0 for k in ks for m in ('recall', 'ndcg')}, 0
    for i, batch in enumerate(dataset.eval_loader(batch_size=batch_size, num_workers=0)):
        if max_users is not None and n >= max_users:
            break
        if not dist.mine(i):
            continue
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        q = host.encode_last(model, batch)
        scores = mask_history(host.item_scores(model, q, num_items, item_vecs), batch['user_hist'])
        for k, v in rank_metrics(scores, batch[dataset.fiid], ks).items():
            sums[k] += float(v.sum())
        n += len(q)
    model.train(was_training)
    keys = list(sums)
    *totals, n = dist.all_sum([sums[k] for k in keys] + [n])
    n = int(n)
    return {k: v / max(n, 1) for k, v in zip(keys, totals)} | {'users': n}


@torch.no_grad()
def evaluate_popularity(train_seqs, dataset, num_items, ks=KS):
    """The popularity baseline (score = training frequency), evaluated exactly like a model."""
    counts = torch.zeros(num_items)
    for s in train_seqs:
        counts.index_add_(0, torch.as_tensor(s, dtype=torch.long), torch.ones(len(s)))
    counts[0] = float('-inf')
    sums, n = {}, 0
    for batch in dataset.eval_loader(batch_size=1024, num_workers=0):
        scores = mask_history(counts.expand(len(batch['user_hist']), -1).clone(), batch['user_hist'])
        for k, v in rank_metrics(scores, batch[dataset.fiid], ks).items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        n += len(scores)
    return {k: v / max(n, 1) for k, v in sums.items()} | {'users': n}


# ----------------------------------------------------------------------------- losses

def pair_logits(model, h, cand):
    """Scores of candidates per position.

    Args:
        h: ``[B, L, D]`` per-position query vectors.
        cand: ``[B, C, D]`` candidate item vectors shared by the positions of a row.
    Returns:
        ``[B, L, C]``.  Inner-product and cosine scorers (also the plugin's temperature-scaled
        cosine, ``score_func.temperature``) use one batched matmul; any other RecStudio scorer is
        called on expanded tensors.
    """
    name = type(model.score_func).__name__
    if name == 'InnerProductScorer':
        return torch.bmm(h, cand.transpose(1, 2))
    if name in ('CosineScorer', 'ScaledCosineScorer'):
        out = torch.bmm(F.normalize(h, dim=-1), F.normalize(cand, dim=-1).transpose(1, 2))
        return out / getattr(model.score_func, 'temperature', 1.0)
    L = h.shape[1]
    return model.score_func(h, cand.unsqueeze(1).expand(-1, L, -1, -1))


def user_regime_loss(model, batch, fiid, num_items, num_negatives=None, gen=None, neg=None, denom=None,
                     weight=None):
    """Sampled-softmax loss over every position of one-row-per-user batches.

    Args:
        batch: ``in_<fiid>`` ``[B, L]`` inputs and ``<fiid>`` ``[B, L]`` next-item targets (0 = pad).
        gen: ``torch.Generator`` (CPU) for ``num_negatives`` negatives per row, so that resume is
            exact; or ``neg`` ``[B, K]``: the negatives drawn by the caller.
        weight: ``[B]`` row weights (``rsir.synthetic_weight`` for augmented rows, 1 for real
            ones) or None; the loss is the weighted mean over target positions.
        denom: what the summed loss is divided by (default: this batch's (weighted) target
            positions); with several processes, the global batch's / the number of processes, so
            that the gradients averaged over the processes are the one-process gradient.
    """
    inp, tgt = batch['in_' + fiid], batch[fiid]
    B = inp.shape[0]
    h = host.encode_all(model, batch)                                         # [B, L, D]
    if neg is None:
        neg = torch.randint(1, num_items, (B, num_negatives), generator=gen)
    neg = neg.to(inp.device)                                                  # [B, K]
    vecs = model.item_encoder.weight if isinstance(model.item_encoder, torch.nn.Embedding) else None
    if vecs is None:
        vecs = host.item_vectors(model, num_items)
    L = h.shape[1]
    pos = pair_logits(model, h.reshape(B * L, 1, -1), vecs[tgt].reshape(B * L, 1, -1)).view(B, L)  # [B, L]
    negl = pair_logits(model, h, vecs[neg])                                   # [B, L, K]
    seq = torch.cat([inp, tgt], 1)                                            # the user's items
    in_hist = (neg.unsqueeze(2) == seq.unsqueeze(1)).any(2)                   # [B, K]
    negl = negl.masked_fill(in_hist.unsqueeze(1), float('-inf'))
    temp = getattr(model, 'temperature', None)
    logits = torch.cat([pos.unsqueeze(-1), negl], -1)
    if temp:
        logits = logits / temp
    valid = tgt > 0
    if weight is not None:
        valid = valid * weight.to(h.device, h.dtype).unsqueeze(1)             # [B, L] weighted positions
    loss = -F.log_softmax(logits, -1)[..., 0]
    if denom is None:
        denom = valid.sum().clamp(min=1) if weight is None else valid.sum().clamp(min=1e-12)
    return (loss * valid).sum() / denom


class TrainStep(torch.nn.Module):
    """One training step's loss as a module.  ``DistributedDataParallel`` hooks ``forward``, while
    RecStudio models are trained through other methods (``training_step``, their encoders), so the
    step is what gets wrapped.  ``forward(batch, neg, denom, weight)`` -> (loss, auxiliary term or None)."""

    def __init__(self, model, regime, fiid, num_items):
        super().__init__()
        self.model, self.regime, self.fiid, self.num_items = model, regime, fiid, num_items

    def forward(self, batch, neg=None, denom=None, weight=None):
        if self.regime == 'user':
            loss = user_regime_loss(self.model, batch, self.fiid, self.num_items, neg=neg, denom=denom, weight=weight)
            return loss, host.auxiliary_loss(self.model, batch)     # e.g. CL4SRec's contrastive term
        loss = self.model.training_step(batch)
        return (loss['loss'] if isinstance(loss, dict) else loss), None


# ----------------------------------------------------------------------------- the loop

def _rng_state(gen):
    """Every RNG state in types ``torch.load(weights_only=True)`` accepts (tensors, tuples, ints)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {'torch': torch.get_rng_state(),
            'numpy': (kind, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
            'python': random.getstate(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            'negatives': gen.get_state()}


def _set_rng_state(state, gen):
    torch.set_rng_state(state['torch'])
    kind, key, pos, has_gauss, cached = state['numpy']
    key = key.numpy() if torch.is_tensor(key) else np.asarray(key)      # older files hold the numpy array
    np.random.set_state((kind, key.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state['python'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    gen.set_state(state['negatives'])


def _save(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _legacy_numpy_globals():
    """What resume states written before 0.2 need besides tensors: numpy's array reconstruction
    (the numpy RNG key), allow-listed by name.  Nothing else can be unpickled."""
    import numpy.core.multiarray as ma
    out = [ma._reconstruct, np.ndarray, np.dtype]
    out += [t for t in (getattr(np.dtypes, 'UInt32DType', None),) if t is not None] if hasattr(np, 'dtypes') else []
    return out


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint or resume state with ``weights_only=True``: a file that would run code
    (or is damaged, or is no checkpoint) is a one-line :class:`UserError` naming it; nothing in it
    is executed."""
    if not os.path.isfile(path):
        raise UserError(f'{path}: checkpoint missing; delete this round\'s folder (or the run folder) and re-run '
                        'the command to train it again')
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:                                     # noqa: BLE001 - any failure is the file's
        msg = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        first = next((ln for ln in msg if 'Unsupported global' in ln), msg[0])[:160]
        raise UserError(f'{path}: not a loadable checkpoint (refused or damaged: {first}); delete it and re-run '
                        'the command, or pass a checkpoint written by this plugin') from None


def fit(model, train_data, val_data, cfg, folder, device='cpu', progress=None, data=None, dist=SINGLE,
        synthetic_weight=1.0):
    """Train ``model`` with early stopping on validation NDCG@20; resume from ``folder`` if a
    checkpoint is there.  Leaves the best weights loaded in ``model`` and returns a summary dict.
    ``data``: a record of the training rows (JSON-able, e.g. their count and hash) kept in the
    training state; resuming with other rows is a one-line error instead of a model of mixed data.
    ``synthetic_weight``: the user regime's loss weight of augmented rows (``rsir.synthetic_weight``).
    ``dist``: the processes of a torchrun job (:mod:`recstudio_rsir.distributed`): each trains on
    its slice of every global batch under ``DistributedDataParallel``; rank 0 writes the files.

    cfg keys: regime, epochs, learning_rate, weight_decay, patience, eval_every, num_negatives,
    batch_size, eval_batch_size, seed, save_every_s (seconds between resume states saved inside an
    epoch; 0: at epoch ends only; a torchrun job saves at epoch ends only), precision (fp32 | bf16:
    the step's forward under autocast, its matrix products in bfloat16; weights, optimizer,
    evaluation and generation stay float32), compile
    (torch.compile the step), eval_max_users (validate on the first N users only; benchmarks on
    data where full-ranking validation of every user would dominate, e.g. benchmarks/scaling.py).
    """
    os.makedirs(folder, exist_ok=True)
    state_path, best_path = os.path.join(folder, TRAIN_STATE), os.path.join(folder, BEST_CHECKPOINT)
    num_items = train_data.num_items
    opt = torch.optim.Adam(model.parameters(), lr=cfg['learning_rate'], weight_decay=cfg.get('weight_decay', 0.0))
    gen = torch.Generator().manual_seed(int(cfg.get('seed', 0)) + 7919)
    start_epoch, best, best_epoch, bad, history, seconds, part = 0, -1.0, -1, 0, [], 0.0, None
    if os.path.exists(state_path):
        st = load_checkpoint(state_path)
        if data is not None and st.get('data') not in (None, data):
            raise UserError(f'{state_path}: training began on other rows than this folder\'s files give now (a '
                            f'synthetic.npz or the converted data changed); delete {folder} and re-run the command '
                            'to train it again from the start')
        if st.get('complete'):
            model.load_state_dict(load_checkpoint(best_path)['model'])
            return st['summary']
        model.load_state_dict(st['model'])
        opt.load_state_dict(st['optimizer'])
        _set_rng_state(st['rng'], gen)
        start_epoch, best, best_epoch, bad = st['epoch'] + 1, st['best_score'], st['best_epoch'], st['bad_epochs']
        history, seconds, part = st['history'], st['seconds'], st.get('in_epoch')
        if part is not None:
            part['rng'] = st['rng']
        log.info('resuming training at epoch %d%s (best val ndcg@20 %.4f at epoch %d)', start_epoch,
                 f", batch {part['batches']}" if part else '', best, best_epoch)
    dist.barrier()                     # every rank has read the folder before rank 0 writes to it

    metric = cfg.get('val_metric', 'ndcg@20')
    regime, fiid, fuid = cfg['regime'], train_data.fiid, train_data.fuid
    syn_weight = float(synthetic_weight)                       # augmented rows: users >= syn_uid_start
    syn_start = getattr(train_data, 'syn_uid_start', None)
    step = TrainStep(model, regime, fiid, num_items)
    dev_type = torch.device(device).type
    if dist.active:                    # gradients all-reduced and averaged over the ranks
        step = torch.nn.parallel.DistributedDataParallel(
            step, device_ids=[device] if dev_type == 'cuda' else None, find_unused_parameters=True)
    if cfg.get('compile'):
        step = torch.compile(step)
    bf16 = cfg.get('precision', 'fp32') == 'bf16'

    def save_state(last_epoch, in_epoch=None):
        """Write the resume state (module docstring) after epoch ``last_epoch``, or inside the next one;
        it holds the loop's counters (best, bad, history, seconds) as they are at the call."""
        _save({'epoch': last_epoch, 'model': model.state_dict(), 'optimizer': opt.state_dict(), 'best_score': best,
               'best_epoch': best_epoch, 'bad_epochs': bad, 'history': history, 'rng': _rng_state(gen),
               'seconds': seconds, 'complete': False, 'data': data, 'in_epoch': in_epoch}, state_path)

    # in-epoch resume states: single-process runs (a torchrun job's ranks hold their own running loss sums)
    save_every = 0.0 if dist.active else float(cfg.get('save_every_s', 0))
    for epoch in range(start_epoch, cfg['epochs']):
        t0 = last_save = time.time()
        total, aux_total, nb, consumed = 0.0, 0.0, 0, 0
        if part is not None:           # this epoch's shuffle again: its start's RNG states (every rank reads the file)
            _set_rng_state(part['rng_start'], gen)
            total, aux_total, nb, consumed = part['loss'], part['aux_loss'], part['trained'], part['batches']
            t0 -= part['seconds']
        elif dist.active:              # rank 0's RNG states on every rank: the same shuffle everywhere
            _set_rng_state(dist.broadcast(_rng_state(gen)), gen)
        rng_start = _rng_state(gen)
        model.train()
        batches = iter(train_data.train_loader(batch_size=cfg['batch_size'], shuffle=True, num_workers=0))
        if part is not None:           # replay the loader to the saved batch, then the RNG states saved there
            for _ in range(consumed):
                next(batches)
            _set_rng_state(part['rng'], gen)
            part = None
        for batch in batches:
            consumed += 1
            B = len(batch[fiid])
            if B < dist.world:         # a last global batch too small to give every rank a row
                continue
            neg, denom, weight = None, None, None
            if regime == 'user':       # drawn for the global batch: the same negatives on any number of ranks
                neg = torch.randint(1, num_items, (B, cfg['num_negatives']), generator=gen)
                if syn_weight != 1.0 and syn_start is not None:
                    weight = torch.where(batch[fuid] >= syn_start, syn_weight, 1.0)            # [B]
                if dist.active:
                    pos = (batch[fiid] > 0).float() * (1.0 if weight is None else weight.unsqueeze(1))
                    denom = pos.sum().clamp(min=1e-12).to(device) / dist.world
            local = dist.shard({**batch, '_neg': neg, '_weight': weight})
            neg, weight = local.pop('_neg'), local.pop('_weight')
            local = {k: v.to(device) if torch.is_tensor(v) else v for k, v in local.items()}
            opt.zero_grad()
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
                loss, extra = step(local, neg, denom, weight)
            if extra is not None:
                loss = loss + extra
                aux_total += float(extra.detach())
            loss.backward()
            opt.step()
            total += float(loss.detach())
            nb += 1
            if save_every and time.time() - last_save >= save_every:
                save_state(epoch - 1, {'epoch': epoch, 'batches': consumed, 'rng_start': rng_start, 'loss': total,
                                       'aux_loss': aux_total, 'trained': nb, 'seconds': time.time() - t0})
                last_save = time.time()
        if dist.active:                # the mean over the ranks is the global batch's loss
            total, aux_total = (x / dist.world for x in dist.all_sum([total, aux_total]))
        train_s = time.time() - t0
        rec = {'epoch': epoch, 'loss': total / max(nb, 1), 'train_seconds': train_s}
        if aux_total:
            rec['aux_loss'] = aux_total / max(nb, 1)          # the weighted extra term inside 'loss'
        last = epoch == cfg['epochs'] - 1
        if (epoch + 1) % cfg.get('eval_every', 1) == 0 or last:
            val = evaluate(model, val_data, num_items, cfg.get('eval_batch_size', 256), device, dist=dist,
                           max_users=cfg.get('eval_max_users'))
            rec.update({f'val_{k}': v for k, v in val.items() if k != 'users'})
            if val[metric] > best:
                best, best_epoch, bad = val[metric], epoch, 0
                _save({'model': model.state_dict(), 'epoch': epoch, 'val': val}, best_path)
            else:
                bad += 1
        seconds += time.time() - t0
        rec['seconds'] = time.time() - t0
        history.append(rec)
        if progress:
            progress(rec)
        stop = bad >= cfg['patience'] or last
        save_state(epoch)
        if stop:
            break

    dist.barrier()
    if not os.path.exists(best_path):  # no validation happened (epochs == 0)
        _save({'model': model.state_dict(), 'epoch': -1, 'val': {}}, best_path)
    dist.barrier()                     # rank 0's best.pt is in place for every rank
    model.load_state_dict(load_checkpoint(best_path)['model'])
    epochs_run = len(history)
    summary = {'best_epoch': best_epoch, 'best_val_' + metric: best, 'epochs_run': epochs_run,
               'train_seconds': seconds, 'seconds_per_epoch': seconds / max(epochs_run, 1),
               'history': history, 'checkpoint': best_path}
    _save({'epoch': epochs_run - 1, 'complete': True, 'summary': summary, 'data': data}, state_path)
    return summary
