"""CL4SRec (Xie et al. 2022, "Contrastive learning for sequential recommendation"), the plugin's own
class, used on both RecStudio flavours: the PyPI release 0.0.2a1 has none, and the GitHub source's
class knows none of the options below (it would ignore them silently), so ``-m CL4SRec`` always
means this class.

A SASRec (RecStudio's own encoder) trained on one row per user, plus a contrastive term: two
augmented views of every sequence in the batch, each made by one augmentation drawn uniformly
from

* crop:    keep a random contiguous window of max(1, floor(crop_ratio * n)) items;
* mask:    replace floor(mask_ratio * n) random positions by the mask token;
* reorder: shuffle a random contiguous window of max(1, floor(reorder_ratio * n)) items;

and InfoNCE over the 2B view vectors with in-batch negatives (similarity / cl_temperature, the
other view of the same sequence is the positive).  Loss = next-item loss + cl_weight * InfoNCE.
Augmentation ratios and weight as the paper and RecStudio's source: crop 0.2, mask 0.7, reorder 0.2,
weight 0.1.  A view's vector is ``cl_pooling``: ``mean`` of the encoder's outputs over the view's
positions (RecStudio's source CL4SRec) or ``last`` (the output at the view's last position).

Similarity: the paper uses dot products at temperature 1.0 (``cl_similarity: dot, cl_temperature:
1.0``).  In the user regime on Beauty that term kept the model on the popularity plateau (measured:
validation NDCG@20 flat for 6-7 epochs with last or mean pooling, while the same model with
``cl_weight: 0`` left it at epoch 3 like SASRec), so the default is cosine similarity at temperature
0.2 (both variants left the plateau at epoch 3; at 1.0 the cosine InfoNCE barely moves).  The mask
token is item id ``num_items`` (one extra embedding row); it is never a candidate:
:func:`recstudio_rsir.host.item_vectors` cuts the table at ``num_items``.
"""
import torch
import torch.nn.functional as F

from .. import host

host.apply_shims()
from recstudio.data import dataset  # noqa: E402
from recstudio.model.seq.sasrec import SASRec  # noqa: E402

DEFAULTS = {'crop_ratio': 0.2, 'mask_ratio': 0.7, 'reorder_ratio': 0.2, 'cl_temperature': 0.2, 'cl_weight': 0.1,
            'cl_pooling': 'mean', 'cl_similarity': 'cosine'}
POOLINGS = ('mean', 'last')
SIMILARITIES = ('dot', 'cosine')


def crop(ids, lens, ratio, u):
    """Keep a random window.  ids ``[B, L]`` right-padded, lens ``[B]``, u ``[B]`` uniforms.
    Returns (ids ``[B, L]``, lens ``[B]``)."""
    L = ids.shape[1]
    keep = (lens.float() * ratio).floor().long().clamp(min=1)
    keep = torch.minimum(keep, lens.clamp(min=1))
    start = (u * (lens - keep + 1).float()).floor().long()
    pos = torch.arange(L, device=ids.device)
    out = ids.gather(1, (start.unsqueeze(1) + pos).clamp(max=L - 1))
    return torch.where(pos < keep.unsqueeze(1), out, 0), keep


def mask(ids, lens, ratio, r, mask_id):
    """Replace floor(ratio * n) random positions (ranked by r ``[B, L]`` uniforms) by ``mask_id``."""
    L = ids.shape[1]
    valid = torch.arange(L, device=ids.device) < lens.unsqueeze(1)
    k = (lens.float() * ratio).floor().long()
    rank = torch.where(valid, r, 2.0).argsort(1).argsort(1)
    return torch.where(rank < k.unsqueeze(1), mask_id, ids), lens


def reorder(ids, lens, ratio, u, r):
    """Shuffle a random window of max(1, floor(ratio * n)) items; u ``[B]`` places the window,
    r ``[B, L]`` orders it.  Items outside the window keep their positions."""
    L = ids.shape[1]
    size = torch.minimum((lens.float() * ratio).floor().long().clamp(min=1), lens.clamp(min=1))
    start = (u * (lens - size + 1).float()).floor().long()
    pos = torch.arange(L, device=ids.device).float().unsqueeze(0)
    win = (pos >= start.unsqueeze(1)) & (pos < (start + size).unsqueeze(1))
    key = torch.where(win, start.unsqueeze(1) + r * (size.unsqueeze(1).float() - 1e-3), pos)
    return ids.gather(1, key.argsort(1)), lens


def augment(ids, lens, mask_id, crop_ratio, mask_ratio, reorder_ratio):
    """One view: per row one augmentation drawn uniformly (global RNG, so training resumes exactly)."""
    B, L = ids.shape
    dev = ids.device
    choice = torch.randint(0, 3, (B,)).to(dev)
    u, r = torch.rand(B).to(dev), torch.rand(B, L).to(dev)
    c_ids, c_len = crop(ids, lens, crop_ratio, u)
    m_ids, _ = mask(ids, lens, mask_ratio, r, mask_id)
    o_ids, _ = reorder(ids, lens, reorder_ratio, u, r)
    pick = choice.unsqueeze(1)
    out = torch.where(pick == 0, c_ids, torch.where(pick == 1, m_ids, o_ids))
    return out, torch.where(choice == 0, c_len, lens)


def view_vector(out, lens, pooling):
    """One vector per view.  out ``[B, L, D]`` encoder outputs (right-padded), lens ``[B]``.
    Returns ``[B, D]``: the mean over the first ``lens`` positions, or the output at position lens-1."""
    if pooling == 'last':
        return out[torch.arange(len(out), device=out.device), (lens - 1).clamp(min=0)]
    valid = (torch.arange(out.shape[1], device=out.device) < lens.unsqueeze(1)).unsqueeze(-1)  # [B, L, 1]
    return (out * valid).sum(1) / valid.sum(1).clamp(min=1)


def info_nce(z1, z2, temperature, similarity='dot'):
    """NT-Xent over ``[B, D]`` view pairs: row i of z1 and z2 are positives, the other 2B - 2 vectors
    of the batch are negatives.  ``similarity``: dot product (the paper's) or cosine."""
    z = torch.cat([z1, z2])                                   # [2B, D]
    if similarity == 'cosine':
        z = F.normalize(z, dim=-1)
    sim = (z @ z.T) / temperature
    sim.fill_diagonal_(float('-inf'))
    B = len(z1)
    labels = (torch.arange(2 * B, device=z.device) + B) % (2 * B)
    return F.cross_entropy(sim, labels)


class CL4SRec(SASRec):
    """SASRec + contrastive views.  Extra hyper-parameters (model group): crop_ratio, mask_ratio,
    reorder_ratio, cl_temperature, cl_weight."""

    def _hp(self, key):
        return host.config_value(self.config, key, 'model', DEFAULTS[key])

    def _get_dataset_class():
        return dataset.SeqToSeqDataset

    def _get_item_encoder(self, train_data):
        self.mask_id = train_data.num_items                      # the extra last row
        return torch.nn.Embedding(train_data.num_items + 1, self.embed_dim, padding_idx=0)

    def contrastive_loss(self, batch):
        """cl_weight * InfoNCE of two augmented views of ``batch['in_<item>']`` ``[B, L]``."""
        ids, lens = batch['in_' + self.fiid], batch['seqlen']
        pooling, sim = str(self._hp('cl_pooling')), str(self._hp('cl_similarity'))
        if pooling not in POOLINGS:
            raise host.UserError(f"model.cl_pooling: '{pooling}' is not one of {', '.join(POOLINGS)}")
        if sim not in SIMILARITIES:
            raise host.UserError(f"model.cl_similarity: '{sim}' is not one of {', '.join(SIMILARITIES)}")
        views = []
        for _ in range(2):
            a_ids, a_len = augment(ids, lens, self.mask_id, float(self._hp('crop_ratio')),
                                   float(self._hp('mask_ratio')), float(self._hp('reorder_ratio')))
            out = host.encode_all(self, {**batch, 'in_' + self.fiid: a_ids, 'seqlen': a_len})  # [B, L, D]
            views.append(view_vector(out, a_len, pooling))
        return float(self._hp('cl_weight')) * info_nce(views[0], views[1], float(self._hp('cl_temperature')), sim)

    def training_step(self, batch):
        return super().training_step(batch) + self.contrastive_loss(batch)
