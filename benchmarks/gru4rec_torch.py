"""A straightforward PyTorch GRU4Rec, the reference the JAX model is compared against.

What a careful PyTorch user writes for left-padded histories: shift each row so its real
items start at slot 0, run `nn.GRU` over a `PackedSequence` (so padding never enters the
recurrence, the same rule as `sfubm_jax.models.gru4rec`'s masked cell), shift back, then
dropout and the output Dense. With the same weights it computes the same outputs
(tests/models/gru4rec_model_test.py), so the throughput benchmark compares like with like.

Flax's `GRUCell` puts the biases on the input side of r and z and on both sides of n;
torch has both biases everywhere, so `load_flax_params` sets torch's b_hr = b_hz = 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class TorchGRU4Rec(nn.Module):
  """seqs [B, L] long (left-padded) -> H [B, L, d], zero at padding."""

  def __init__(self, num_items: int, dim: int, num_layers: int, dropout: float):
    super().__init__()
    self.item_emb = nn.Embedding(num_items + 1, dim, padding_idx=0)
    self.emb_dropout = nn.Dropout(dropout)
    self.gru = nn.GRU(dim, dim, num_layers, batch_first=True)
    self.out_dropout = nn.Dropout(dropout)
    self.out = nn.Linear(dim, dim)

  def forward(self, seqs: torch.Tensor) -> torch.Tensor:
    b, length = seqs.shape
    real = seqs != 0
    lengths = real.sum(1)  # [B]
    # left-padded -> right-padded: slot t of row b reads slot t + (L - n_b) (mod L)
    slots = torch.arange(length, device=seqs.device)
    shift = (slots[None, :] + (length - lengths)[:, None]) % length  # [B, L]
    x = self.emb_dropout(self.item_emb(torch.gather(seqs, 1, shift)))  # [B, L, d]
    keep = lengths > 0  # an all-padding row (a batch's filler) has nothing to run
    out = torch.zeros_like(x)
    if keep.any():
      packed = pack_padded_sequence(x[keep], lengths[keep].cpu(), batch_first=True,
                                    enforce_sorted=False)
      y, _ = self.gru(packed)
      out[keep] = pad_packed_sequence(y, batch_first=True, total_length=length)[0]
    # back to left padding: slot s of the output reads slot s - (L - n_b) (mod L)
    back = (slots[None, :] - (length - lengths)[:, None]) % length
    out = torch.gather(out, 1, back[..., None].expand_as(out))
    return self.out(self.out_dropout(out)) * real[..., None].to(out.dtype)


def load_flax_params(model: TorchGRU4Rec, params: dict) -> None:
  """Copies Flax GRU4Rec params (`params["params"]`) into `model`."""
  p = jax_to_numpy(params["params"])
  t = lambda a: torch.tensor(np.asarray(a, np.float32))
  with torch.no_grad():
    model.item_emb.weight.copy_(t(p["item_emb"]["embedding"]))
    model.out.weight.copy_(t(p["out"]["kernel"].T))
    model.out.bias.copy_(t(p["out"]["bias"]))
    for layer in range(model.gru.num_layers):
      c = p[f"gru_{layer}"]["scan"]["cell"]
      w_ih = np.concatenate([c[g]["kernel"].T for g in ("ir", "iz", "in")], 0)
      w_hh = np.concatenate([c[g]["kernel"].T for g in ("hr", "hz", "hn")], 0)
      b_ih = np.concatenate([c[g]["bias"] for g in ("ir", "iz", "in")], 0)
      zeros = np.zeros_like(c["hn"]["bias"])
      b_hh = np.concatenate([zeros, zeros, c["hn"]["bias"]], 0)
      getattr(model.gru, f"weight_ih_l{layer}").copy_(t(w_ih))
      getattr(model.gru, f"weight_hh_l{layer}").copy_(t(w_hh))
      getattr(model.gru, f"bias_ih_l{layer}").copy_(t(b_ih))
      getattr(model.gru, f"bias_hh_l{layer}").copy_(t(b_hh))


def jax_to_numpy(tree):
  if isinstance(tree, dict):
    return {k: jax_to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)
