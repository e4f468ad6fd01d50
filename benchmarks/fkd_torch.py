"""A straightforward PyTorch FKD objective (SPEC §6, Eq. 8–14), the benchmark's reference.

The same math as `sfubm_jax.models.fkd.fkd_loss` with the frozen SASRec run in torch
(`sasrec_torch.TorchSASRec`, eval mode, no grad): four two-layer GELU (tanh) MLPs, the
counterfactual S' drawn from the items each user never touched, L_KD against a detached
M', the two reconstructions, and L_rec at the real next-item positions only
(`hidden[mask]`, as a careful eager user writes it) over ẽ = E^id + f_t(C). Every term
is a per-user mean over real positions, then a mean over users that have any. f_t runs on
the distinct rows of its table (`text_tables`, `torch.unique`: C has at most K+1), as
ours does, so the benchmark compares the same math. With the same weights and the same
S' it gives the same loss and gradients (tests/training/fkd_loss_test.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NETS = ("f_id", "f_t", "g_id", "g_t")


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
  return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(approximate="tanh"),
                       nn.Linear(hidden, d_out))


class TorchFKD(nn.Module):
  """The four trainable nets f_id (d→d), f_t (d_t→d), g_id (d→d), g_t (d→d_t)."""

  def __init__(self, dim: int, text_dim: int, hidden: int = 128):
    super().__init__()
    self.f_id, self.f_t = mlp(dim, hidden, dim), mlp(text_dim, hidden, dim)
    self.g_id, self.g_t = mlp(dim, hidden, dim), mlp(dim, hidden, text_dim)


def text_tables(text_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
  """(distinct rows [R, d_t], row of each item [N+1]) of the table f_t reads."""
  rows, index = torch.unique(text_in, dim=0, return_inverse=True)
  return rows, index


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  """[B, L] values, bool mask -> mean over each row's real positions, then rows with any."""
  m = mask.to(values.dtype)
  count = m.sum(-1)
  per_row = (values * m).sum(-1) / count.clamp(min=1)
  has = (count > 0).to(values.dtype)
  return (per_row * has).sum() / has.sum().clamp(min=1)


def sample_counterfactual(seqs: torch.Tensor, touched: torch.Tensor, num_items: int,
                          generator: torch.Generator | None = None) -> torch.Tensor:
  """At each real slot of seqs [B, L], an item drawn uniformly from 1..N minus touched."""
  sentinel = num_items + 1
  t = torch.where(touched > 0, touched, sentinel).sort(-1).values
  repeat = torch.cat([torch.zeros_like(t[:, :1], dtype=torch.bool), t[:, 1:] == t[:, :-1]], 1)
  t = torch.where(repeat, sentinel, t).sort(-1).values  # distinct, ascending
  num_free = num_items - (t < sentinel).sum(-1, keepdim=True)  # [B, 1]
  u = torch.rand(seqs.shape, generator=generator)
  item = (u * num_free).long() + 1
  for j in range(t.shape[1]):
    item = item + (t[:, j:j + 1] <= item).long()
  return torch.where(seqs > 0, item, torch.zeros_like(item))


def fkd_loss(nets: TorchFKD, sasrec: nn.Module, frozen: dict[str, torch.Tensor],
             seqs: torch.Tensor, touched: torch.Tensor, *, alpha: float = 0.5,
             beta: float = 0.2, cf: torch.Tensor | None = None) -> torch.Tensor:
  """L = L_rec + L_KD + α·L_id + β·L_txt.

  frozen: item_emb [N+1, d], text_local [N+1, d_t], and text_rows, text_index from
  `text_tables` of the table f_t reads.
  """
  num_items = frozen["item_emb"].shape[0] - 1
  real = seqs > 0
  if cf is None:
    cf = sample_counterfactual(seqs, touched, num_items)
  inputs, targets = seqs[:, :-1], seqs[:, 1:]
  with torch.no_grad():  # SASRec is frozen
    h, h_cf, r = sasrec(seqs), sasrec(cf), sasrec(inputs)
  features = nets.f_t(frozen["text_rows"])[frozen["text_index"]]  # f_t of every item
  z_id, z_t = nets.f_id(h), features[seqs]
  m = z_id - z_t
  m_cf = (nets.f_id(h_cf) - features[cf]).detach()
  l_kd = masked_mean(((m - m_cf) ** 2).sum(-1), real)
  l_id = masked_mean(((nets.g_id(z_id) - h) ** 2).sum(-1), real)
  l_txt = masked_mean(((nets.g_t(z_t) - frozen["text_local"][seqs]) ** 2).sum(-1), real)

  mask = inputs > 0
  count = mask.sum(-1, keepdim=True).float()
  weights = mask.float() / count.clamp(min=1) / (count > 0).sum().clamp(min=1)
  fused = frozen["item_emb"][1:] + features[1:]  # ẽ without padding
  logits = r[mask] @ fused.T  # [P, N]
  ce = nn.functional.cross_entropy(logits, targets[mask] - 1, reduction="none")
  l_rec = (ce * weights[mask]).sum()
  return l_rec + l_kd + alpha * l_id + beta * l_txt


def load_flax_params(nets: TorchFKD, params: dict) -> None:
  """Copies `fkd.init_params`-shaped Flax params into `nets`."""
  with torch.no_grad():
    for name in NETS:
      p = params[name]["params"]
      seq = getattr(nets, name)
      for layer, key in ((seq[0], "hidden"), (seq[2], "out")):
        layer.weight.copy_(torch.tensor(np.asarray(p[key]["kernel"], np.float32).T))
        layer.bias.copy_(torch.tensor(np.asarray(p[key]["bias"], np.float32)))
