"""GRU4Rec (Hidasi et al. 2016) with the SASRec interface, so one code path trains both.

Item embedding (padding row 0) → embedding dropout → `num_layers` GRU layers → dropout →
Dense to d. `__call__(seqs [B, L], deterministic) -> H [B, L, d]`: the output at each
position summarises the items up to it. The GRU state stays at zero through left
padding, so outputs do not depend on how much padding precedes the real items.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sfubm_jax.models.sasrec import padded_embedding_init, xavier


class MaskedGRUCell(nn.Module):
  """A GRU step that keeps the previous state where the input slot is padding."""

  dim: int

  @nn.compact
  def __call__(self, carry, inputs):
    x, real = inputs  # [B, d_in], [B, 1] bool
    new_carry, _ = nn.GRUCell(self.dim, kernel_init=xavier, name="cell")(carry, x)
    carry = jnp.where(real, new_carry, carry)
    return carry, carry


class GRULayer(nn.Module):
  """A GRU over the time axis of [B, L, d_in] with a padding mask [B, L, 1]."""

  dim: int

  @nn.compact
  def __call__(self, x: jax.Array, real: jax.Array) -> jax.Array:
    scan = nn.scan(
        MaskedGRUCell,
        variable_broadcast="params",
        split_rngs={"params": False},
        in_axes=1,
        out_axes=1,
    )
    carry = jnp.zeros((x.shape[0], self.dim), x.dtype)  # [B, d]
    _, outputs = scan(self.dim, name="scan")(carry, (x, real))
    return outputs  # [B, L, d]


class GRU4Rec(nn.Module):
  """GRU sequential recommender; seqs [B, L] left-padded -> H [B, L, d]."""

  num_items: int
  dim: int = 50
  num_layers: int = 1
  dropout: float = 0.2
  max_len: int = 10

  def setup(self):
    self.item_emb = nn.Embed(self.num_items + 1, self.dim, embedding_init=padded_embedding_init)
    self.emb_dropout = nn.Dropout(self.dropout)
    self.layers = [GRULayer(self.dim, name=f"gru_{i}") for i in range(self.num_layers)]
    self.out_dropout = nn.Dropout(self.dropout)
    self.out = nn.Dense(self.dim, kernel_init=xavier)

  def __call__(self, seqs: jax.Array, deterministic: bool = True) -> jax.Array:
    real = (seqs != 0)[..., None]  # [B, L, 1]
    x = self.emb_dropout(self.item_emb(seqs), deterministic=deterministic)  # [B, L, d]
    for layer in self.layers:
      x = layer(x, real)
    x = self.out_dropout(x, deterministic=deterministic)
    return self.out(x) * real.astype(x.dtype)  # [B, L, d]

  def item_table(self) -> jax.Array:
    """The item embedding table E [N+1, d] (row 0 = padding)."""
    return self.item_emb.embedding
