"""SASRec (Kang & McAuley 2018) as a Flax Linen module (SPEC §5).

Follows the reference PyTorch implementation (pmixer/SASRec.pytorch): item embedding ×
sqrt(d) plus a learned positional embedding, embedding dropout, a timeline mask that
zeroes padding positions, blocks of

    Q = LN(x);  x = Q + CausalMHA(queries=Q, keys=values=x);  x = LN(x)
    x = x + FFN(x) (Dense, dropout, ReLU, Dense, dropout);    x = x * mask

and a final layer norm (eps 1e-8 as in the reference). Two deliberate departures, both
so that the output at a real position depends only on the real items up to it:
- positions are counted from the right end (the last slot is position 1, padding is
  position 0), so the same history gets the same outputs whatever its left padding; with
  a fixed window this is the reference's slot numbering reversed;
- positions older than `positions` share the last row (position ids are clamped to
  `positions`): pre-training inputs hold at most `positions` items (the training history
  without its last item), while validation and test histories hold one and two more, so
  without the clamp their oldest items would be encoded with rows no gradient ever
  reached (SPEC §5: every parameter used at evaluation was trained);
- padding keys are masked out of attention (the reference only masks causally and lets
  padding slots, zeroed but carrying projection biases, take part).
Row 0 of the item table (padding) is initialised to zeros and never receives gradient
when logits exclude it.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

LN_EPS = 1e-8  # The reference's LayerNorm eps.
xavier = nn.initializers.glorot_normal()


def padded_embedding_init(key, shape, dtype=jnp.float32):
  """Xavier-normal table [N+1, d] (as the reference) with the padding row 0 zeroed."""
  table = xavier(key, shape, dtype)
  return table.at[0].set(0.0)


def right_positions(seqs: jax.Array, positions: int | None = None) -> jax.Array:
  """Position ids counted from the right end: last slot 1, ..., padding 0. [B, L] int32.

  With `positions` set, ids above it are clamped to it (the oldest items share a row).
  """
  length = seqs.shape[1]
  pos = length - jnp.arange(length, dtype=jnp.int32)  # [L]: L, ..., 1
  if positions is not None:
    pos = jnp.minimum(pos, positions)
  return jnp.where(seqs != 0, pos[None, :], 0)


def attention_mask(seqs: jax.Array) -> jax.Array:
  """Causal mask that also hides padding keys: [B, 1, L, L] bool (True = attend)."""
  length = seqs.shape[1]
  causal = jnp.tril(jnp.ones((length, length), dtype=bool))  # [L, L]
  keys = seqs != 0  # [B, L]
  return causal[None, None] & keys[:, None, None, :]


class PointWiseFeedForward(nn.Module):
  """Conv1d(k=1) ≡ Dense: Dense, dropout, ReLU, Dense, dropout, plus the residual."""

  dim: int
  dropout: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    y = nn.Dense(self.dim, kernel_init=xavier, name="conv1")(x)
    y = nn.Dropout(self.dropout)(y, deterministic=deterministic)
    y = nn.relu(y)
    y = nn.Dense(self.dim, kernel_init=xavier, name="conv2")(y)
    y = nn.Dropout(self.dropout)(y, deterministic=deterministic)
    return x + y


class SASRecBlock(nn.Module):
  """One self-attention block of the reference (queries from the normalised input)."""

  dim: int
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, x, mask, timeline, deterministic: bool):
    # x [B, L, d], mask [B, 1, L, L], timeline [B, L, 1]
    q = nn.LayerNorm(epsilon=LN_EPS, name="attention_ln")(x)
    attn = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads,
        qkv_features=self.dim,
        out_features=self.dim,
        dropout_rate=self.dropout,
        broadcast_dropout=False,
        kernel_init=xavier,
        name="attention",
    )(q, x, x, mask=mask, deterministic=deterministic)
    x = q + attn
    x = nn.LayerNorm(epsilon=LN_EPS, name="forward_ln")(x)
    x = PointWiseFeedForward(self.dim, self.dropout, name="forward")(x, deterministic)
    return x * timeline


class SASRec(nn.Module):
  """Self-attentive sequential recommender; `__call__` returns all position outputs.

  seqs [B, L] int32 left-padded item ids (0 = padding), L <= max_len -> H [B, L, d].
  `positions` (0 = max_len) is the number of learned position rows besides padding's:
  the longest training input; older items share row `positions`.
  """

  num_items: int
  dim: int = 50
  num_blocks: int = 2
  num_heads: int = 1
  dropout: float = 0.2
  max_len: int = 10
  positions: int = 0

  @property
  def num_positions(self) -> int:
    return self.positions or self.max_len

  def setup(self):
    self.item_emb = nn.Embed(self.num_items + 1, self.dim, embedding_init=padded_embedding_init)
    self.pos_emb = nn.Embed(self.num_positions + 1, self.dim, embedding_init=xavier)
    self.emb_dropout = nn.Dropout(self.dropout)
    self.blocks = [
        SASRecBlock(self.dim, self.num_heads, self.dropout, name=f"block_{i}")
        for i in range(self.num_blocks)
    ]
    self.last_ln = nn.LayerNorm(epsilon=LN_EPS)

  def __call__(self, seqs: jax.Array, deterministic: bool = True) -> jax.Array:
    if seqs.shape[1] > self.max_len:
      raise ValueError(f"sequence length {seqs.shape[1]} exceeds max_len {self.max_len}")
    timeline = (seqs != 0)[..., None].astype(jnp.float32)  # [B, L, 1]
    x = self.item_emb(seqs) * math.sqrt(self.dim)  # [B, L, d]
    x = x + self.pos_emb(right_positions(seqs, self.num_positions))
    x = self.emb_dropout(x, deterministic=deterministic) * timeline
    mask = attention_mask(seqs)  # [B, 1, L, L]
    for block in self.blocks:
      x = block(x, mask, timeline, deterministic)
    return self.last_ln(x)  # [B, L, d]

  def item_table(self) -> jax.Array:
    """The item embedding table E [N+1, d] (row 0 = padding)."""
    return self.item_emb.embedding
