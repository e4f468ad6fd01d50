"""Full-softmax cross-entropy computed only at the positions that count.

A batch of left-padded sequences [B, L] has far fewer real next-item positions than
B × L (on the food data ≈ 40%), and the item projection H · E^T over the whole catalogue
is most of a training step. `weighted_ce` gathers the positions with a non-zero weight
into a buffer of `capacity` rows before the projection (a static size, so one
compilation serves every batch; `position_capacity` gives the smallest size that holds
every batch of a run), then projects onto the catalogue. Up to `DENSE_LOGITS` logits it
does so in one matmul (on a 2-core CPU with 8,298 items this is the fastest: chunks of
512–4,096 items were 6–55% slower, BENCHMARKS.md); above, it takes the log-sum-exp in
item chunks with a streaming (running max, running sum) reduction and recomputes each
chunk's logits in the backward pass, so no [capacity, N] matrix is ever held (a 10^6-item
catalogue fits).

  loss = Σ_p w_p · (logsumexp_i(h_p · E_i) − h_p · E_{y_p})

A batch with more weighted positions than `capacity` gives a NaN loss (never a silently
truncated one).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

DENSE_LOGITS = 2**26  # most logits (capacity × items) held at once before chunking


def position_capacity(seqs: np.ndarray, batch_size: int, seed: int, epochs: int,
                      multiple: int = 8) -> int:
  """The most next-item positions (real inputs of seqs[:, :-1]) in any batch of a run.

  Replays `seqrec_train.epoch_batches`' seeded order for epochs 0..epochs-1 (host, cheap)
  and rounds up to `multiple`. seqs [U, L] left-padded training sequences.
  """
  per_user = (np.asarray(seqs)[:, :-1] != 0).sum(1)  # [U]
  num = -(-len(per_user) // batch_size)
  most = 1
  for epoch in range(max(epochs, 1)):
    order = np.random.default_rng([seed, epoch]).permutation(len(per_user))
    padded = np.zeros(num * batch_size, np.int64)
    padded[: len(order)] = per_user[order]
    most = max(most, int(padded.reshape(num, batch_size).sum(1).max()))
  return min(-(-most // multiple) * multiple, batch_size * (seqs.shape[1] - 1))


def _chunks(table: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
  """[N, d] -> ([K, chunk, d] zero-padded, [K, chunk] bias 0 for real rows, -inf else)."""
  n, d = table.shape
  k = -(-n // chunk)
  padded = jnp.pad(table, ((0, k * chunk - n), (0, 0))).reshape(k, chunk, d)
  bias = jnp.where(jnp.arange(k * chunk) < n, 0.0, -jnp.inf).reshape(k, chunk)
  return padded, bias.astype(table.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def chunked_logsumexp(h: jax.Array, table: jax.Array, chunk: int) -> jax.Array:
  """log Σ_i exp(h · table_i) per row: h [C, d], table [N, d] -> [C], in item chunks."""
  return _lse_fwd(h, table, chunk)[0]


def _lse_fwd(h, table, chunk):
  tiles, bias = _chunks(table, chunk)

  def body(carry, xs):
    run_max, run_sum = carry  # [C], [C]
    t, b = xs
    logits = h @ t.T + b  # [C, chunk]
    new_max = jnp.maximum(run_max, logits.max(-1))
    run_sum = run_sum * jnp.exp(run_max - new_max) + jnp.exp(
        logits - new_max[:, None]).sum(-1)
    return (new_max, run_sum), None

  init = (jnp.full(h.shape[:1], -jnp.inf, h.dtype), jnp.zeros(h.shape[:1], h.dtype))
  (run_max, run_sum), _ = jax.lax.scan(body, init, (tiles, bias))
  lse = run_max + jnp.log(run_sum)
  return lse, (h, table, lse)


def _lse_bwd(chunk, res, g):
  h, table, lse = res
  tiles, bias = _chunks(table, chunk)

  def body(grad_h, xs):
    t, b = xs
    p = jnp.exp(h @ t.T + b - lse[:, None]) * g[:, None]  # [C, chunk] g · softmax
    return grad_h + p @ t, p.T @ h  # [C, d], [chunk, d]

  grad_h, grad_tiles = jax.lax.scan(body, jnp.zeros_like(h), (tiles, bias))
  return grad_h, grad_tiles.reshape(-1, table.shape[1])[: table.shape[0]]


chunked_logsumexp.defvjp(_lse_fwd, _lse_bwd)


def weighted_ce(hidden: jax.Array, table: jax.Array, labels: jax.Array, weights: jax.Array,
                *, capacity: int | None = None, chunk: int | None = None) -> jax.Array:
  """Σ_p w_p · CE(softmax(hidden_p · table^T), labels_p) over positions with w_p ≠ 0.

  hidden [..., d], labels [...] int (row of `table`), weights [...] float; table [N, d].
  capacity: rows of the gather buffer (None = every position); chunk: items per
  log-sum-exp chunk (None = dense up to `DENSE_LOGITS` logits, chunks of that size above).
  """
  d = hidden.shape[-1]
  flat_h = hidden.reshape(-1, d)  # [P, d]
  flat_y, flat_w = labels.reshape(-1), weights.reshape(-1)  # [P]
  capacity = flat_w.shape[0] if capacity is None else capacity
  keep = flat_w != 0
  (idx,) = jnp.nonzero(keep, size=capacity, fill_value=0)  # [capacity]
  filled = jnp.arange(capacity) < keep.sum()
  h = flat_h[idx]  # [capacity, d]
  y = flat_y[idx]
  w = jnp.where(filled, flat_w[idx], 0.0)
  if chunk is None:
    chunk = max(1, DENSE_LOGITS // capacity)
  if chunk >= table.shape[0]:
    lse = jax.nn.logsumexp(h @ table.T, axis=-1)
  else:
    lse = chunked_logsumexp(h, table, chunk)
  target = jnp.sum(h * table[y], axis=-1)  # [capacity]
  loss = jnp.sum(w * (lse - target))
  return jnp.where(keep.sum() > capacity, jnp.nan, loss)
