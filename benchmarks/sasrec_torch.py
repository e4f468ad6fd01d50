"""A straightforward PyTorch SASRec, the reference the JAX model is compared against.

Written after the reference implementation (pmixer/SASRec.pytorch) with the two choices
of `sfubm_jax.models.sasrec` (positions counted from the right, padding keys masked), so
that with the same weights it computes the same outputs (tests check this) and the
throughput benchmark compares like with like.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LN_EPS = 1e-8


class TorchSASRec(nn.Module):
  """seqs [B, L] long (left-padded) -> H [B, L, d]."""

  def __init__(self, num_items: int, dim: int, num_blocks: int, num_heads: int,
               dropout: float, max_len: int):
    super().__init__()
    self.dim = dim
    self.item_emb = nn.Embedding(num_items + 1, dim, padding_idx=0)
    self.pos_emb = nn.Embedding(max_len + 1, dim, padding_idx=0)
    self.emb_dropout = nn.Dropout(dropout)
    self.attention_lns = nn.ModuleList(nn.LayerNorm(dim, eps=LN_EPS) for _ in range(num_blocks))
    self.attentions = nn.ModuleList(
        nn.MultiheadAttention(dim, num_heads, dropout, batch_first=True)
        for _ in range(num_blocks)
    )
    self.forward_lns = nn.ModuleList(nn.LayerNorm(dim, eps=LN_EPS) for _ in range(num_blocks))
    self.conv1 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_blocks))
    self.conv2 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_blocks))
    self.ffn_dropout = nn.Dropout(dropout)
    self.last_ln = nn.LayerNorm(dim, eps=LN_EPS)
    self.num_heads = num_heads

  def forward(self, seqs: torch.Tensor) -> torch.Tensor:
    b, length = seqs.shape
    real = seqs != 0  # [B, L]
    timeline = real.unsqueeze(-1).float()
    pos = (length - torch.arange(length, device=seqs.device)).unsqueeze(0) * real
    x = self.item_emb(seqs) * math.sqrt(self.dim) + self.pos_emb(pos)
    x = self.emb_dropout(x) * timeline
    allowed = torch.tril(torch.ones(length, length, dtype=torch.bool, device=seqs.device))
    allowed = allowed.unsqueeze(0) & real.unsqueeze(1)  # [B, L(q), L(k)]
    bias = torch.zeros(allowed.shape, device=seqs.device).masked_fill(~allowed, -1e9)
    bias = bias.repeat_interleave(self.num_heads, dim=0)  # [B*heads, L, L]
    for i in range(len(self.attentions)):
      q = self.attention_lns[i](x)
      attn, _ = self.attentions[i](q, x, x, attn_mask=bias, need_weights=False)
      x = self.forward_lns[i](q + attn)
      y = self.ffn_dropout(self.conv2[i](torch.relu(self.ffn_dropout(self.conv1[i](x)))))
      x = (x + y) * timeline
    return self.last_ln(x)


def load_flax_params(model: TorchSASRec, params: dict) -> None:
  """Copies Flax SASRec params (`params["params"]`) into `model`."""
  p = jax_to_numpy(params["params"])
  t = lambda a: torch.tensor(np.asarray(a, np.float32))
  d = model.dim
  with torch.no_grad():
    model.item_emb.weight.copy_(t(p["item_emb"]["embedding"]))
    model.pos_emb.weight.copy_(t(p["pos_emb"]["embedding"]))
    model.last_ln.weight.copy_(t(p["last_ln"]["scale"]))
    model.last_ln.bias.copy_(t(p["last_ln"]["bias"]))
    for i in range(len(model.attentions)):
      blk = p[f"block_{i}"]
      att = blk["attention"]
      w = [att[n]["kernel"].reshape(d, d).T for n in ("query", "key", "value")]
      bias = [att[n]["bias"].reshape(d) for n in ("query", "key", "value")]
      model.attentions[i].in_proj_weight.copy_(t(np.concatenate(w, 0)))
      model.attentions[i].in_proj_bias.copy_(t(np.concatenate(bias, 0)))
      model.attentions[i].out_proj.weight.copy_(t(att["out"]["kernel"].reshape(d, d).T))
      model.attentions[i].out_proj.bias.copy_(t(att["out"]["bias"]))
      for ln, name in ((model.attention_lns[i], "attention_ln"),
                       (model.forward_lns[i], "forward_ln")):
        ln.weight.copy_(t(blk[name]["scale"]))
        ln.bias.copy_(t(blk[name]["bias"]))
      for lin, name in ((model.conv1[i], "conv1"), (model.conv2[i], "conv2")):
        lin.weight.copy_(t(blk["forward"][name]["kernel"].T))
        lin.bias.copy_(t(blk["forward"][name]["bias"]))


def jax_to_numpy(tree):
  if isinstance(tree, dict):
    return {k: jax_to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)
