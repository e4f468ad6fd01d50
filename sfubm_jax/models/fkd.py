"""Fact-counter knowledge distillation (SPEC §6, Eq. 8–14) with SASRec frozen.

Trainable: four position-wise MLPs, f_id (d→d), f_t (d_t→d), g_id (d→d), g_t (d→d_t).
Frozen (passed in, never differentiated): the SASRec params and its item table E^id, the
text table fed to f_t (federated centroids C, or local vectors X for `kd_local`) and the
local vectors X that L_txt reconstructs.

  factual         M  = f_id(H) − f_t(C_u)              H = SASRec(S_u)
  counterfactual  M' = f_id(SASRec(S')) − f_t(C'_u)    S' = items u never touched
                                                       (train, validation or test)
  L_KD  = ‖M − stop_gradient(M')‖²     L_id = ‖g_id(f_id(H)) − H‖²
  L_txt = ‖g_t(f_t(C_u)) − X_u‖²       L_rec = −log softmax_i(r_t · ẽ_i)[v_{t+1}]
  ẽ_i   = w_id·E^id_i + w_t·f_t(c_i)   (residual fusion, the ID Encoding Layer)
  L     = L_rec + L_KD + α·L_id + β·L_txt

Every term is a squared L2 norm (or a cross-entropy) per position, averaged over the
real positions of each user, then over the users that have any (SPEC "mean_u mean_pos").

r_t is the frozen SASRec output at the last slot of the prefix v_1..v_t, computed exactly
as in SASRec pre-training (`sfubm_jax.training.seqrec_train.next_item_loss`: the history
without its last item predicts the next item at every position; `rec_positions="last"`
keeps only the final one, i.e. the SPEC's r_u). Since r and E^id are frozen, L_rec
reaches only f_t (through ẽ); f_id, g_id, g_t are shaped by L_KD and the reconstructions.

Variants (SPEC §8) are data, not branches: `Switches` picks the table fed to f_t and the
weights of the two modalities in ẽ; the mediator and every loss term are the same for
all variants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sfubm_jax.training.position_ce import weighted_ce

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": nn.gelu,  # tanh approximation (flax default)
    "relu": nn.relu,
    "tanh": jnp.tanh,
}

NETS = ("f_id", "f_t", "g_id", "g_t")
TEACHERS = ("stop_gradient", "joint")  # L_KD's M' is a fixed target, or differentiated too
REC_POSITIONS = ("all", "last")  # L_rec at every next-item position, or the last only

# (frozen sasrec params, seqs [B, L] int32) -> H [B, L, d]
Encoder = Callable[[Any, jax.Array], jax.Array]


class MLP(nn.Module):
  """Position-wise two-layer MLP: Dense(hidden) → activation → Dense(features)."""

  hidden: int
  features: int
  activation: str = "gelu"
  out_init_scale: float = 1.0  # multiplies the default init of the output layer

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:  # [..., in] -> [..., features]
    h = ACTIVATIONS[self.activation](nn.Dense(self.hidden, name="hidden")(x))
    if self.out_init_scale == 0.0:
      init = nn.initializers.zeros
    else:
      init = nn.initializers.variance_scaling(self.out_init_scale**2, "fan_in", "truncated_normal")
    return nn.Dense(self.features, kernel_init=init, name="out")(h)


@dataclasses.dataclass(frozen=True)
class Switches:
  """What distinguishes the variants: the text fed to f_t and the modalities of ẽ."""

  text: str  # "federated" (centroids C) or "local" (raw vectors X, no federation)
  id_weight: float  # weight of E^id_i in ẽ_i
  text_weight: float  # weight of f_t(c_i) in ẽ_i


VARIANTS: dict[str, Switches] = {
    "fkd": Switches(text="federated", id_weight=1.0, text_weight=1.0),
    "kd_local": Switches(text="local", id_weight=1.0, text_weight=1.0),
    # ẽ = E^id: nothing trainable reaches ẽ, so its scores equal SASRec's.
    "id_only": Switches(text="federated", id_weight=1.0, text_weight=0.0),
    "text_only": Switches(text="federated", id_weight=0.0, text_weight=1.0),
}


@dataclasses.dataclass(frozen=True)
class FKDHParams:
  """Static hyper-parameters of the FKD objective (closed over by the jitted step)."""

  encode: Encoder  # the frozen SASRec forward
  dim: int  # d, SASRec width
  text_dim: int  # d_t, text-encoder width
  hidden: int = 128  # width of the four MLPs
  activation: str = "gelu"
  alpha: float = 0.5  # weight of L_id (Eq. 14)
  beta: float = 0.2  # weight of L_txt (Eq. 14)
  rec_positions: str = "all"  # L_rec on every next-item position, or only the "last"
  text_out_init: float = 1.0  # output-layer init scale of f_t (0 = ẽ starts at E^id)
  teacher: str = "stop_gradient"  # M' is a fixed target, or "joint": L_KD differentiates both
  switches: Switches = VARIANTS["fkd"]

  def nets(self) -> dict[str, MLP]:
    d, dt, w, act = self.dim, self.text_dim, self.hidden, self.activation
    return {
        "f_id": MLP(w, d, act),
        "f_t": MLP(w, d, act, out_init_scale=self.text_out_init),
        "g_id": MLP(w, d, act),
        "g_t": MLP(w, dt, act),
    }


def init_params(key: jax.Array, hp: FKDHParams) -> dict[str, Any]:
  """Params of f_id, f_t, g_id, g_t, keyed by those names."""
  nets = hp.nets()
  in_dims = {"f_id": hp.dim, "f_t": hp.text_dim, "g_id": hp.dim, "g_t": hp.dim}
  keys = jax.random.split(key, len(NETS))
  return {
      name: nets[name].init(k, jnp.zeros((1, in_dims[name]), jnp.float32))
      for name, k in zip(NETS, keys)
  }


def apply_net(params: dict[str, Any], hp: FKDHParams, name: str, x: jax.Array) -> jax.Array:
  return hp.nets()[name].apply(params[name], x)


def mean_weights(mask: jax.Array) -> jax.Array:
  """[B, L] weights of `masked_mean`: 1 / (row count · rows with any) at real positions."""
  mask = mask.astype(jnp.float32)
  count = mask.sum(-1, keepdims=True)  # [B, 1]
  rows = jnp.maximum((count > 0).sum(), 1).astype(jnp.float32)
  return mask / jnp.maximum(count, 1.0) / rows


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over each row's real positions, then over rows with any. [B, L], [B, L] -> []."""
  mask = mask.astype(values.dtype)
  count = mask.sum(-1)  # [B]
  per_row = (values * mask).sum(-1) / jnp.maximum(count, 1.0)  # [B]
  has_any = (count > 0).astype(values.dtype)
  return (per_row * has_any).sum() / jnp.maximum(has_any.sum(), 1.0)


def sample_counterfactual(key: jax.Array, seqs: jax.Array, touched: jax.Array,
                          num_items: int) -> jax.Array:
  """S'_u: at each real position of `seqs`, an item drawn uniformly from 1..N minus `touched`.

  `touched` [B, T] holds every item of the user's stored sequence (training items and
  the validation and test targets; 0 = padding), so S' never contains a held-out target.
  Draws are independent (with replacement across positions); padding stays where it is.
  The k-th untouched item is found by stepping k+1 over the row's sorted distinct items.
  seqs [B, L] int32 (0 = padding) -> [B, L] int32.
  """
  sentinel = num_items + 1
  touched = jnp.sort(jnp.where(touched > 0, touched, sentinel), axis=-1)  # [B, T]
  repeat = jnp.concatenate(
      [jnp.zeros_like(touched[:, :1], bool), touched[:, 1:] == touched[:, :-1]], axis=-1
  )
  touched = jnp.sort(jnp.where(repeat, sentinel, touched), axis=-1)  # distinct, ascending
  num_free = num_items - (touched < sentinel).sum(-1, keepdims=True)  # [B, 1]
  rank = jax.random.randint(key, seqs.shape, 0, num_free)  # [B, L] in [0, num_free)
  item = rank + 1
  for j in range(touched.shape[1]):
    item = item + (touched[:, j : j + 1] <= item)
  return jnp.where(seqs > 0, item, 0).astype(jnp.int32)


def frozen_tables(sasrec: Any, item_emb: Any, text_in: Any, text_local: Any) -> dict[str, Any]:
  """The frozen argument of `fkd_loss`, with f_t's input stored as its distinct rows.

  text_in [N+1, d_t] (C or X) becomes "text_rows" [R, d_t] (its distinct rows) and
  "text_index" [N+1] (row of each item): f_t runs on R rows per step, not N+1. For the
  federated centroids R ≤ K + 1 (K ≈ 100 against N ≈ 8,000–19,000 items), so ẽ's f_t(C)
  costs a fraction of a step. Where fewer than half the rows repeat (local X: all rows
  distinct) the table is kept as it is and the index is empty: the gather and its
  scatter-add gradient would cost more than they save (kitchen kd_local: 108 s against
  94 s, BENCHMARKS.md).
  """
  text_in = np.asarray(text_in, np.float32)
  rows, index = np.unique(text_in, axis=0, return_inverse=True)
  if len(rows) > len(text_in) // 2:
    rows, index = text_in, np.zeros(0, np.int32)
  return {
      "sasrec": sasrec,
      "item_emb": jnp.asarray(item_emb, jnp.float32),
      "text_rows": jnp.asarray(rows),
      "text_index": jnp.asarray(np.asarray(index).reshape(-1), jnp.int32),
      "text_local": jnp.asarray(text_local, jnp.float32),
  }


def text_features(params: dict[str, Any], frozen: dict[str, Any], hp: FKDHParams) -> jax.Array:
  """Z^t of every item, f_t(text_in) [N+1, d], computed once per distinct text row."""
  features = apply_net(params, hp, "f_t", frozen["text_rows"])
  index = frozen["text_index"]  # empty: the rows are the items themselves
  return features if index.shape[0] == 0 else features[index]


def fuse(features: jax.Array, item_emb: jax.Array, hp: FKDHParams) -> jax.Array:
  """ẽ = w_id·E^id + w_t·Z^t: the ID Encoding Layer. [N+1, d], row 0 (padding) = 0."""
  s = hp.switches
  return (s.id_weight * item_emb + s.text_weight * features).at[0].set(0.0)


def fused_item_embeddings(
    params: dict[str, Any], frozen: dict[str, Any], hp: FKDHParams
) -> jax.Array:
  """ẽ = w_id·E^id + w_t·f_t(text): the ID Encoding Layer. [N+1, d], row 0 (padding) = 0."""
  return fuse(text_features(params, frozen, hp), frozen["item_emb"], hp)


def fkd_loss(
    params: dict[str, Any],
    frozen: dict[str, Any],
    batch: dict[str, jax.Array],
    *,
    key: jax.Array,
    hp: FKDHParams,
    rec_capacity: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """L = L_rec + L_KD + α·L_id + β·L_txt on a batch of training sequences (Eq. 14).

  frozen: `frozen_tables(SASRec params, E^id [N+1, d], C or X [N+1, d_t] (what f_t
  reads), X [N+1, d_t] (what g_t reconstructs))`.
  batch: {"seqs": [B, L] int32 left-padded training histories, "touched": [B, T] every
  item of each user's stored sequence}; `key` draws the counterfactual sequences.
  rec_capacity: L_rec's gather buffer (`position_ce.position_capacity` of the run's
  batches; None = every position; "last" needs only B).
  Returns (L, aux) with aux holding every term.
  """
  seqs = jnp.asarray(batch["seqs"])  # [B, L]
  num_items = frozen["item_emb"].shape[0] - 1
  real = seqs > 0  # [B, L]
  features = text_features(params, frozen, hp)  # Z^t of every item [N+1, d]
  h = hp.encode(frozen["sasrec"], seqs)  # [B, L, d]
  z_id, z_t = apply_net(params, hp, "f_id", h), features[seqs]  # [B, L, d] each
  m = z_id - z_t  # the mediator M = Z^id − Z^t

  cf = sample_counterfactual(key, seqs, jnp.asarray(batch["touched"]), num_items)  # [B, L]
  h_cf = hp.encode(frozen["sasrec"], cf)  # [B, L, d]
  m_cf = apply_net(params, hp, "f_id", h_cf) - features[cf]
  if hp.teacher == "stop_gradient":
    teacher = jax.lax.stop_gradient(m_cf)
  elif hp.teacher == "joint":
    teacher = m_cf
  else:
    raise ValueError(f"teacher must be one of {TEACHERS}, got {hp.teacher!r}")
  l_kd = masked_mean(jnp.sum((m - teacher) ** 2, -1), real)

  l_id = masked_mean(jnp.sum((apply_net(params, hp, "g_id", z_id) - h) ** 2, -1), real)
  x = frozen["text_local"][seqs]  # [B, L, d_t]
  l_txt = masked_mean(jnp.sum((apply_net(params, hp, "g_t", z_t) - x) ** 2, -1), real)

  # L_rec as SASRec was trained: the history without its last item predicts the next
  # item at every position (the last slot's output is exactly r_u of that prefix).
  inputs, targets = seqs[:, :-1], seqs[:, 1:]  # [B, L-1] each
  rec_mask = inputs > 0  # left padding: a real input has a real next item
  if hp.rec_positions == "last":
    rec_mask = rec_mask.at[:, :-1].set(False)
    rec_capacity = seqs.shape[0]  # at most one position per row
  elif hp.rec_positions != "all":
    raise ValueError(f"rec_positions must be one of {REC_POSITIONS}, got {hp.rec_positions!r}")
  r = hp.encode(frozen["sasrec"], inputs)  # [B, L-1, d]
  emb = fuse(features, frozen["item_emb"], hp)  # [N+1, d]
  # masked_mean's weights; only those positions reach the projection onto ẽ[1:].
  weights = mean_weights(rec_mask)  # [B, L-1]
  l_rec = weighted_ce(r, emb[1:], jnp.maximum(targets - 1, 0), weights,
                      capacity=rec_capacity)

  loss = l_rec + l_kd + hp.alpha * l_id + hp.beta * l_txt
  aux = {"loss": loss, "l_rec": l_rec, "l_kd": l_kd, "l_id": l_id, "l_txt": l_txt}
  return loss, aux
