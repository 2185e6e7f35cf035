"""Incremental encoding for generation (issue #15 item 2): each layer's keys and values are kept per
trajectory, and a query encodes only the positions that changed since the last call for that row.

Applies to RecStudio's ``SASRecQueryEncoder`` on both flavours and to encoders built the same way
(the plugin's CL4SRec): item + absolute position embeddings from the left, a post-norm
``torch.nn.TransformerEncoder`` with a causal mask, the output at the last real position; and to the
plugin's HSTU (:mod:`recstudio_rsir.models.hstu`: pointwise SiLU attention with a relative position bias,
keys ``dqk`` and values ``dv`` per head, L2-normalised output).  With a causal mask the output at
position t depends only on positions <= t, so appending an item leaves every earlier key and value
unchanged: one new position per step costs O(L) instead of re-encoding the whole context (O(L^2) over a
trajectory).  Other encoders (bidirectional ones, unknown ones) use the full re-encoding.

The cache is keyed by the row id the generator gives each trajectory of a batch (``rid``); which
positions are still valid is found by comparing the cached items with the context, so a context that
was shortened or changed is simply re-encoded from the first differing position.
"""
import math

import torch


def _is_hstu(encoder):
    from ..models.hstu import HSTUQueryEncoder
    return type(encoder) is HSTUQueryEncoder


def supports(encoder):
    """True when ``encoder`` has the structure this cache reproduces exactly (see module doc)."""
    if _is_hstu(encoder):
        return True
    layers = getattr(getattr(encoder, 'transformer_layer', None), 'layers', None)
    if layers is None or not hasattr(encoder, 'position_emb') or not hasattr(encoder, 'item_encoder'):
        return False
    if getattr(encoder, 'bidirectional', True):
        return False
    pooling = getattr(encoder, 'eval_pooling_type', None) or \
        getattr(getattr(encoder, 'gather_layer', None), 'pooling_type', None)
    if pooling != 'last':
        return False
    for layer in layers:
        if not isinstance(layer, torch.nn.TransformerEncoderLayer) or layer.norm_first or \
                not layer.self_attn.batch_first or not layer.self_attn._qkv_same_embed_dim or \
                layer.self_attn.bias_k is not None or not callable(layer.activation):
            return False
    return True


class KVCache:
    """Keys/values of every layer for the rows of one generation batch.

    ``begin(B, L)``: a new batch of B rows with contexts of at most L items.
    ``query(ctx, lens, rid)``: ctx ``[A, Lc]`` right-padded ids, lens ``[A]``, rid ``[A]`` row ids in
    the batch -> ``[A, D]``, equal (up to float rounding) to the encoder's output at position lens-1.
    Returns None when the call cannot be served (a context longer than the position table).
    """

    def __init__(self, encoder):
        self.enc = encoder
        self.hstu = _is_hstu(encoder)
        if self.hstu:
            self.layers = list(encoder.blocks)
            self.widths = [(b.h * b.dqk, b.h * b.dv) for b in self.layers]        # key, value width per layer
            self.step = self._hstu_block
        else:
            self.layers = list(encoder.transformer_layer.layers)
            self.final_norm = encoder.transformer_layer.norm
            D = encoder.position_emb.embedding_dim
            self.widths = [(D, D)] * len(self.layers)
            self.step = self._layer
        self.max_pos = encoder.position_emb.num_embeddings
        self.tokens = None

    def begin(self, rows, length):
        w = self.enc.position_emb.weight
        length = min(length, self.max_pos)
        self.tokens = torch.zeros(rows, length, dtype=torch.long, device=w.device)     # cached items
        self.n = torch.zeros(rows, dtype=torch.long, device=w.device)                  # valid positions
        self.keys = [torch.zeros(rows, length, dk, dtype=w.dtype, device=w.device) for dk, _ in self.widths]
        self.values = [torch.zeros(rows, length, dv, dtype=w.dtype, device=w.device) for _, dv in self.widths]
        self.positions_encoded = 0

    def _embed(self, items, p):
        """The encoder's input at positions ``p`` (dropout: eval) ``[a, D]``."""
        if self.hstu:
            return self.enc.item_encoder(items) * math.sqrt(self.enc.dim) + self.enc.position_emb(p)
        return self.enc.item_encoder(items) + self.enc.position_emb(p)

    def _output(self, x):
        if self.hstu:
            return torch.nn.functional.normalize(x, dim=-1, eps=1e-6)
        return self.final_norm(x) if self.final_norm is not None else x

    @torch.no_grad()
    def query(self, ctx, lens, rid):
        if self.tokens is None or int(lens.max()) > self.tokens.shape[1] or int(lens.min()) < 1:
            return None
        A, Lc = ctx.shape
        W = min(Lc, self.tokens.shape[1])
        same = (self.tokens[rid, :W] == ctx[:, :W]).long().cumprod(1).sum(1)       # [A] matching prefix
        valid = torch.minimum(torch.minimum(same, self.n[rid]), lens - 1)          # always redo lens-1
        w = self.enc.position_emb.weight
        out = torch.empty(A, w.shape[1], dtype=w.dtype, device=ctx.device)
        while True:
            sel = (valid < lens).nonzero().squeeze(1)
            if len(sel) == 0:
                return out
            p = valid[sel]                                                         # [a] position to encode
            r = rid[sel]
            items = ctx[sel, p]
            x = self._embed(items, p)                                              # [a, D]
            for layer, K, V in zip(self.layers, self.keys, self.values):
                x = self.step(layer, x, K, V, r, p)
            out[sel] = self._output(x)
            self.positions_encoded += len(sel)
            self.tokens[r, p] = items
            self.n[r] = p + 1
            valid[sel] = p + 1

    @staticmethod
    def _layer(layer, x, K, V, r, p):
        """One post-norm encoder layer at position ``p`` of rows ``r``; stores this layer's key and
        value there, attends over positions 0..p.  x ``[a, D]`` -> ``[a, D]``."""
        att = layer.self_attn
        D, h = att.embed_dim, att.num_heads
        d = D // h
        q, k, v = torch.nn.functional.linear(x, att.in_proj_weight, att.in_proj_bias).chunk(3, dim=-1)
        K[r, p] = k
        V[r, p] = v
        P = int(p.max()) + 1
        keys, vals = K[r, :P].view(-1, P, h, d), V[r, :P].view(-1, P, h, d)      # [a, P, h, d]
        s = torch.einsum('ahd,aphd->ahp', q.view(-1, h, d), keys) / math.sqrt(d)  # [a, h, P]
        s = s.masked_fill((torch.arange(P, device=x.device) > p.unsqueeze(1)).unsqueeze(1), float('-inf'))
        o = torch.einsum('ahp,aphd->ahd', s.softmax(-1), vals).reshape(-1, D)
        x = layer.norm1(x + att.out_proj(o))
        return layer.norm2(x + layer.linear2(layer.activation(layer.linear1(x))))

    @staticmethod
    def _hstu_block(b, x, K, V, r, p):
        """One HSTU block (:class:`recstudio_rsir.models.hstu.HSTUBlock`, eval mode) at position ``p``
        of rows ``r``: stores its key and value, attends over positions 0..p with the relative
        position bias ``w[N - 1 + j - p]``.  x ``[a, D]`` -> ``[a, D]``."""
        F = torch.nn.functional
        h, dqk, dv = b.h, b.dqk, b.dv
        n = F.layer_norm(x, (b.dim,), eps=b.eps)
        u, v, q, k = torch.split(F.silu(n @ b.uvqk), [dv * h, dv * h, dqk * h, dqk * h], dim=-1)
        K[r, p] = k
        V[r, p] = v
        P = int(p.max()) + 1
        j = torch.arange(P, device=x.device)
        keys, vals = K[r, :P].view(-1, P, h, dqk), V[r, :P].view(-1, P, h, dv)   # [a, P, h, d]
        s = torch.einsum('ahd,aphd->ahp', q.view(-1, h, dqk), keys)             # [a, h, P]
        bias = b.rel_bias.w[b.max_len - 1 + j.unsqueeze(0) - p.unsqueeze(1)]   # [a, P]
        att = F.silu(s + bias.unsqueeze(1)) / b.max_len
        att = att * (j.unsqueeze(0) <= p.unsqueeze(1)).unsqueeze(1)            # causal
        a = torch.einsum('ahp,aphd->ahd', att, vals).reshape(-1, h * dv)
        return x + b.o(u * F.layer_norm(a, (h * dv,), eps=b.eps))
