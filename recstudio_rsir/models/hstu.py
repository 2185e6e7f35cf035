"""HSTU (Zhai et al. 2024, "Actions speak louder than words") as a RecStudio retriever.

Written from the description in the paper and the behaviour of the reference implementation
(facebookresearch/generative-recommenders, ``research/modeling/sequential/hstu.py``), as a dense
(padded) PyTorch module instead of the reference's jagged tensors.  One block::

    n        = layernorm(x)                               no affine parameters, eps 1e-6
    u,v,q,k  = split(silu(n @ W_uvqk))                    one projection, per-head dims dv / dqk
    A        = silu(q k^T + rel_pos_bias) / max_seq_len   per head; bias shared by heads; no softmax
    A        = A * causal * valid_key                     a query never sees a later or padded item
    x        = x + linear(dropout(u * layernorm(A v)))    no feed-forward sub-layer
    x        = x * valid                                  padded rows stay exactly zero

The reference divides the attention by its padded length ``n``, which there is always the model's
maximum length; dividing by the fixed ``max_seq_len`` keeps that scale and makes the output
independent of how much padding a batch carries.  Input: item embedding * sqrt(D) + learned
absolute position embedding, dropout; output: L2-normalised; scores: cosine similarity divided
by a temperature (0.05).  The reference also adds a bucketed time-difference bias when the data
carries timestamps; the sequence files used here carry none, so only the relative *position*
bias exists (``time_bias`` is not implemented; asking for it is an error).

Defaults (``recstudio_rsir/model_configs/hstu.yaml``) follow the reference's Amazon config:
64-d, 4 blocks, 4 heads, dqk = dv = 16, dropout 0.5, temperature 0.05.
"""
import math

import torch
import torch.nn.functional as F

from .. import host
from ..errors import UserError

host.apply_shims()
from recstudio.ann import sampler  # noqa: E402
from recstudio.data import dataset  # noqa: E402
from recstudio.model import basemodel, loss_func, scorer  # noqa: E402

DEFAULTS = {'embed_dim': 64, 'num_blocks': 4, 'num_heads': 4, 'dqk': 16, 'dv': 16, 'dropout_rate': 0.5,
            'temperature': 0.05, 'time_bias': False}


class ScaledCosineScorer(scorer.CosineScorer):
    """RecStudio's cosine scorer divided by a temperature (accepts all of RecStudio's shapes)."""

    def __init__(self, temperature):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, query, items):
        return super().forward(query, items) / self.temperature


class RelativePositionBias(torch.nn.Module):
    """Learned bias ``w[N - 1 + j - i]`` for query position i and key position j (N = max length),
    shared by all heads: ``[L, L]`` for a sequence of L <= N positions."""

    def __init__(self, max_len):
        super().__init__()
        self.max_len = max_len
        self.w = torch.nn.Parameter(torch.empty(2 * max_len - 1).normal_(0, 0.02))

    def forward(self, L):
        pos = torch.arange(L, device=self.w.device)
        return self.w[self.max_len - 1 + pos.unsqueeze(0) - pos.unsqueeze(1)]


class HSTUBlock(torch.nn.Module):
    def __init__(self, dim, num_heads, dqk, dv, dropout, max_len, eps=1e-6):
        super().__init__()
        self.dim, self.h, self.dqk, self.dv, self.max_len, self.eps = dim, num_heads, dqk, dv, max_len, eps
        self.uvqk = torch.nn.Parameter(torch.empty(dim, (2 * dv + 2 * dqk) * num_heads).normal_(0, 0.02))
        self.o = torch.nn.Linear(dv * num_heads, dim)
        self.rel_bias = RelativePositionBias(max_len)
        self.dropout = dropout

    def forward(self, x, valid):
        """x ``[B, L, D]`` (padded rows zero), valid ``[B, L]`` bool -> ``[B, L, D]``."""
        B, L, _ = x.shape
        h, dqk, dv = self.h, self.dqk, self.dv
        n = F.layer_norm(x, (self.dim,), eps=self.eps)
        u, v, q, k = torch.split(F.silu(n @ self.uvqk), [dv * h, dv * h, dqk * h, dqk * h], dim=-1)
        att = torch.einsum('bnhd,bmhd->bhnm', q.view(B, L, h, dqk), k.view(B, L, h, dqk))   # [B, H, L, L]
        att = F.silu(att + self.rel_bias(L)) / self.max_len
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        att = att * (causal & valid.unsqueeze(1).unsqueeze(1))                    # [B, 1|H, L, L]
        a = torch.einsum('bhnm,bmhd->bnhd', att, v.view(B, L, h, dv)).reshape(B, L, h * dv)
        a = F.layer_norm(a, (h * dv,), eps=self.eps)
        out = x + self.o(F.dropout(u * a, p=self.dropout, training=self.training))
        return out * valid.unsqueeze(-1)


class HSTUQueryEncoder(torch.nn.Module):
    """``forward(batch, need_pooling=True)``: ``batch['in_<item>']`` ``[B, L]`` right-padded ids and
    ``batch['seqlen']`` ``[B]`` -> the last position's L2-normalised vector ``[B, D]``, or every
    position ``[B, L, D]`` with ``need_pooling=False``."""

    def __init__(self, fiid, item_encoder, dim, max_len, num_blocks, num_heads, dqk, dv, dropout):
        super().__init__()
        self.fiid = fiid
        self.item_encoder = item_encoder
        self.dim = dim
        self.position_emb = torch.nn.Embedding(max_len, dim)
        self.dropout = torch.nn.Dropout(dropout)
        self.blocks = torch.nn.ModuleList(
            HSTUBlock(dim, num_heads, dqk, dv, dropout, max_len) for _ in range(num_blocks))

    def forward(self, batch, need_pooling=True):
        ids = batch['in_' + self.fiid]
        valid = ids > 0
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.item_encoder(ids) * math.sqrt(self.dim) + self.position_emb(pos).unsqueeze(0)
        x = self.dropout(x) * valid.unsqueeze(-1)
        for block in self.blocks:
            x = block(x, valid)
        x = F.normalize(x, dim=-1, eps=1e-6)
        if not need_pooling:
            return x
        last = (batch['seqlen'] - 1).clamp(min=0)
        return x[torch.arange(len(ids), device=ids.device), last]


class HSTU(basemodel.BaseRetriever):
    """HSTU for RecStudio.  Hyper-parameters (model group): embed_dim, num_blocks, num_heads, dqk, dv,
    dropout_rate, temperature; see the module docstring."""

    def _hp(self, key):
        return host.config_value(self.config, key, 'model', DEFAULTS[key])

    def _get_dataset_class():
        return dataset.SeqDataset

    def _get_item_encoder(self, train_data):
        return torch.nn.Embedding(train_data.num_items, self.embed_dim, padding_idx=0)

    def _get_query_encoder(self, train_data):
        if self._hp('time_bias'):
            raise UserError('model.time_bias: true is not supported (the sequence files carry no timestamps); '
                            'accepted: false')
        return HSTUQueryEncoder(self.fiid, self.item_encoder, self.embed_dim, train_data.config['max_seq_len'],
                                int(self._hp('num_blocks')), int(self._hp('num_heads')), int(self._hp('dqk')),
                                int(self._hp('dv')), float(self._hp('dropout_rate')))

    def _get_score_func(self):
        return ScaledCosineScorer(self._hp('temperature'))

    def _get_loss_func(self):
        return loss_func.SampledSoftmaxLoss()

    def _get_sampler(self, train_data):
        return sampler.UniformSampler(train_data.num_items)

    def _init_parameter(self):
        """The reference's initialisation (RecStudio's generic one would overwrite it)."""
        enc = self.query_encoder
        torch.nn.init.trunc_normal_(self.item_encoder.weight, std=0.02)
        with torch.no_grad():
            self.item_encoder.weight[0].zero_()
        torch.nn.init.xavier_normal_(enc.position_emb.weight)
        for b in enc.blocks:
            torch.nn.init.normal_(b.uvqk, std=0.02)
            torch.nn.init.xavier_uniform_(b.o.weight)
            torch.nn.init.zeros_(b.o.bias)
            torch.nn.init.normal_(b.rel_bias.w, std=0.02)
