"""Tiled cosine nearest-neighbour search (SPEC §3), jitted.

Both searches walk the similarity matrix in square blocks of `tile` rows × `tile`
columns with a running (best value, best index) per row, so memory is O(tile²) besides
the inputs (never N × N): N = 10^6 fits. Blocks are read straight from the input and
normalised on the fly: no padded or normalised copy of the data is made. The last
block is shifted back to end at row N; rows seen twice are harmless because merging
candidates is a max. Ties go to the smallest index, as `numpy.argmax` does.

- `nearest_other(x)`: j*(i) = argmax_{j≠i} cos(x_i, x_j). The matrix is symmetric, so
  only block pairs I ≤ J are computed; each updates its rows with its row maxima and
  its columns with its column maxima (half the matmul work). The self pair is set to
  -inf in place on the matmul's output (one scatter along a shifted diagonal) and each
  arg-max is a max plus a masked min over the ids, so a tile is read four times after
  the matmul and never copied.
- `nearest_neighbour(q, k)`: argmax_j cos(q_i, k_j) (the re-identification attack).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_EPS = 1e-12


def normalize(x: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm; a zero row stays zero."""
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, _EPS)


def _inv_norms(x: jax.Array) -> jax.Array:
  """[N, D] -> [N] 1 / ||x_i|| (0 rows give a large finite factor times 0 = 0)."""
  return 1.0 / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1)), _EPS)


def _block(x: jax.Array, inv: jax.Array, b: jax.Array, tile: int):
  """Block `b` of rows, normalised: ([tile, D], global row ids [tile]); the last is shifted."""
  start = jnp.minimum(b * tile, x.shape[0] - tile)
  rows = jax.lax.dynamic_slice_in_dim(x, start, tile).astype(jnp.float32)
  scale = jax.lax.dynamic_slice_in_dim(inv, start, tile)
  return rows * scale[:, None], start + jnp.arange(tile, dtype=jnp.int32)


def _merge(best_val, best_idx, val, idx):
  """Keeps the larger value; on equal values the smaller index (numpy.argmax order)."""
  take = (val > best_val) | ((val == best_val) & (idx < best_idx))
  return jnp.where(take, val, best_val), jnp.where(take, idx, best_idx)


def _max_and_arg(s: jax.Array, ids: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
  """(max, smallest id attaining it) of `s` along `axis`; ids [s.shape[axis]] int32.

  Two vectorised reductions (a max, then a min over the ids where s equals it) read a
  cache-resident tile faster than one (value, index) arg-max reduction does.
  """
  best = jnp.max(s, axis=axis)
  hit = s == jnp.expand_dims(best, axis)
  ids = ids[None, :] if axis == 1 else ids[:, None]
  return best, jnp.min(jnp.where(hit, ids, jnp.iinfo(jnp.int32).max), axis=axis)


def _exclude_self(s: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """s [tile_r, tile_c] with -inf where row id == column id, written in place.

  Block ranges are contiguous, so the self pairs lie on one shifted diagonal
  (r, r + rows[0] - cols[0]); off-range entries (blocks that do not overlap: all of them)
  are dropped by the scatter, so no masked copy of the tile is made.
  """
  r = jnp.arange(s.shape[0], dtype=jnp.int32)
  c = r + (rows[0] - cols[0])
  c = jnp.where((c >= 0) & (c < s.shape[1]), c, s.shape[1])  # out of range: dropped
  return s.at[r, c].set(-jnp.inf, mode="drop")


def _update(best, start, val, idx):
  """Merges (val, idx) [tile] into the flat running best ([N], [N]) at `start`."""
  best_val, best_idx = best
  tile = val.shape[0]
  old_val = jax.lax.dynamic_slice_in_dim(best_val, start, tile)
  old_idx = jax.lax.dynamic_slice_in_dim(best_idx, start, tile)
  new_val, new_idx = _merge(old_val, old_idx, val, idx)
  return (jax.lax.dynamic_update_slice_in_dim(best_val, new_val, start, 0),
          jax.lax.dynamic_update_slice_in_dim(best_idx, new_idx, start, 0))


def _init(n: int):
  return jnp.full((n,), -jnp.inf, jnp.float32), jnp.full((n,), n, jnp.int32)


@functools.partial(jax.jit, static_argnames=("tile",))
def nearest_other(x: jax.Array, *, tile: int = 2048) -> jax.Array:
  """[N] int32: for each row the index of its most cosine-similar *other* row."""
  n = x.shape[0]
  tile = max(1, min(tile, n))
  inv = _inv_norms(x)  # [N]
  bi, bj = np.triu_indices(-(-n // tile))  # block pairs with I <= J, static
  bi, bj = jnp.asarray(bi, jnp.int32), jnp.asarray(bj, jnp.int32)

  def body(p, best):
    a, rows = _block(x, inv, bi[p], tile)  # [tile, D], [tile]
    b, cols = _block(x, inv, bj[p], tile)
    s = _exclude_self(a @ b.T, rows, cols)  # [tile, tile]
    best = _update(best, rows[0], *_max_and_arg(s, cols, axis=1))
    return _update(best, cols[0], *_max_and_arg(s, rows, axis=0))

  return jax.lax.fori_loop(0, bi.shape[0], body, _init(n))[1]


@functools.partial(jax.jit, static_argnames=("tile",))
def nearest_neighbour(queries: jax.Array, keys: jax.Array, *, tile: int = 2048) -> jax.Array:
  """[Q] int32: for each query row the index of its most cosine-similar key row."""
  nq, nk = queries.shape[0], keys.shape[0]
  tq, tk = max(1, min(tile, nq)), max(1, min(tile, nk))
  inv_q, inv_k = _inv_norms(queries), _inv_norms(keys)

  def query_block(qb, out):
    q, rows = _block(queries, inv_q, qb, tq)  # [tq, D]

    def key_block(kb, best):
      k, cols = _block(keys, inv_k, kb, tk)
      return _merge(*best, *_max_and_arg(q @ k.T, cols, axis=1))  # s [tq, tk]

    best = (jnp.full((tq,), -jnp.inf, jnp.float32), jnp.full((tq,), nk, jnp.int32))
    _, idx = jax.lax.fori_loop(0, -(-nk // tk), key_block, best)
    return jax.lax.dynamic_update_slice_in_dim(out, idx, rows[0], 0)

  return jax.lax.fori_loop(0, -(-nq // tq), query_block, jnp.zeros((nq,), jnp.int32))
