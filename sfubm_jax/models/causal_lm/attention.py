"""Attention pieces every causal-LM family shares: positions, masks, the KV-cache write,
the einsum attention.

The conventions of the backbone interface: `attention_mask` is [B, T] without a cache
(1 = real token, left padding allowed) and [B, S] over all S cache slots with one (1 = a
real token is or will be there); new tokens are written at slots index .. index+T−1.
With a cache it may also be [B, T, S]: the keys each new token may attend to, given
explicitly (several answers packed into one row, `stage2.rank_from_cache`); position ids
are then required.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
  """HF's position ids: 0, 1, ... over real tokens, −1 on padding. [B, S] -> [B, S]."""
  mask = attention_mask.astype(jnp.int32)
  return jnp.cumsum(mask, axis=1) * mask - 1


def causal_inputs(attention_mask, cache_index, t: int, position_ids=None):
  """(allowed [B, 1, T, S] bool, positions [B, T]) for T new tokens at `cache_index`.

  A [B, T, S] mask is used as given (no causal rule added) and needs `position_ids`.
  """
  if attention_mask.ndim == 3:
    if position_ids is None:
      raise ValueError("a [B, T, S] attention mask needs explicit position_ids")
    return attention_mask.astype(bool)[:, None], position_ids
  key_ok = attention_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, S]
  start = 0 if cache_index is None else cache_index
  q_pos = start + jnp.arange(t)  # [T] slots of the new tokens
  k_pos = jnp.arange(attention_mask.shape[1])  # [S]
  allowed = key_ok & (k_pos[None, :] <= q_pos[:, None])[None, None]  # [B, 1, T, S]
  if position_ids is None:
    position_ids = jax.lax.dynamic_slice_in_dim(positions_from_mask(attention_mask), start, t,
                                                axis=1)  # [B, T]
  return allowed, position_ids


def write_cache(layer_cache: dict, k: jax.Array, v: jax.Array, index) -> dict:
  """The layer cache {"k", "v"} [B, S, K, Dh] with k, v [B, T, K, Dh] written at `index`."""
  dtype = layer_cache["k"].dtype
  return {"k": jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(dtype), (0, index, 0, 0)),
          "v": jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(dtype), (0, index, 0, 0))}


def attend(q: jax.Array, k: jax.Array, v: jax.Array, allowed: jax.Array, *, scale: float,
           dtype, dropout=None) -> jax.Array:
  """softmax(q kᵀ · scale over the allowed keys, in float32) v: [B, T, N·Dh].

  q [B, T, N, Dh]; k, v [B, S, K, Dh] with N = K·G (grouped-query attention; K = N is
  multi-head); allowed [B, 1, T, S] bool; `dropout(probs)`, if given, acts on the
  probabilities. Heads are moved before time first so that both einsums are plain batched
  matmuls over (B, K) with the G·T query rows of a K/V head stacked: on the CPU this is
  1.6× faster (fwd + bwd, SmolLM2's shapes at 8 × 424) than einsums over
  [B, T, K, G, Dh], which make XLA transpose the [.., T, S] scores.
  """
  b, t, n, dh = q.shape
  s, kv = k.shape[1], k.shape[2]
  g = n // kv
  qg = q.reshape(b, t, kv, g, dh).transpose(0, 2, 3, 1, 4).reshape(b, kv, g * t, dh)
  kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, S, Dh]
  scores = jnp.einsum("bkqd,bksd->bkqs", qg, kt).astype(jnp.float32)  # [B, K, G·T, S]
  if scale != 1.0:
    scores = scores * scale
  scores = jnp.where(allowed[:, :, None], scores.reshape(b, kv, g, t, s),
                     jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1).astype(dtype).reshape(b, kv, g * t, s)
  if dropout is not None:
    probs = dropout(probs)
  out = jnp.einsum("bkqs,bksd->bkqd", probs, vt)  # [B, K, G·T, Dh]
  return out.reshape(b, kv, g, t, dh).transpose(0, 3, 1, 2, 4).reshape(b, t, n * dh)
