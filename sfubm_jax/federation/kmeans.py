"""k-means++ seeding and Lloyd iterations (SPEC §4, Eq. 7), pure and jitted.

Squared distances come from one matmul, ||x||² − 2·x·c + ||c||², computed over chunks
of `chunk` rows so memory stays O(chunk × K) besides the data itself (N = 10^6 fits).
Chunks never pad or copy the data: the last chunk is shifted back to end at row N and
its rows already seen are weighted 0.

Seeding: first centre uniform; each next one drawn with probability ∝ D(x)², the squared
distance to the nearest chosen centre. With `trials` > 1 it draws that many candidates
and keeps the one that lowers the potential Σ D(x)² most (greedy k-means++, as
scikit-learn does). Lloyd: assign, move every centre to its members' mean, stop when
the largest centre shift is below `tol` or after `max_iter` iterations. A cluster left
empty is re-seeded at the points farthest from their centres, so no centre is NaN.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class KMeansResult(NamedTuple):
  centres: jax.Array  # [K, D] float32
  labels: jax.Array  # [N] int32, index of each point's centre
  inertia: jax.Array  # scalar: Σ_i ||x_i − μ_{a(i)}||²
  iterations: jax.Array  # scalar int32: Lloyd updates done
  shift: jax.Array  # scalar: largest centre move of the last update


def default_trials(k: int) -> int:
  """scikit-learn's candidate count per seeding step: 2 + floor(ln K)."""
  return 2 + int(math.log(k))


def _sq_dists(x: jax.Array, x_sq: jax.Array, c: jax.Array) -> jax.Array:
  """[N, D], [N], [K, D] -> [N, K] squared distances, clipped at 0."""
  c_sq = jnp.sum(c * c, axis=-1)
  return jnp.maximum(x_sq[:, None] - 2.0 * (x @ c.T) + c_sq[None, :], 0.0)


@functools.partial(jax.jit, static_argnames=("k", "trials"))
def kmeans_plusplus(key: jax.Array, x: jax.Array, *, k: int, trials: int = 0):
  """Seeds k centres; returns (centres [K, D], indices [K] int32 of the chosen points)."""
  n = x.shape[0]
  trials = trials or default_trials(k)
  x = x.astype(jnp.float32)
  x_sq = jnp.sum(x * x, axis=-1)  # [N]
  key_first, key_rest = jax.random.split(key)
  first = jax.random.randint(key_first, (), 0, n, dtype=jnp.int32)
  closest = _sq_dists(x, x_sq, x[first][None])[:, 0].at[first].set(0.0)  # [N]
  centres = jnp.zeros((k, x.shape[1]), jnp.float32).at[0].set(x[first])
  indices = jnp.zeros((k,), jnp.int32).at[0].set(first)

  def body(c, carry):
    centres, indices, closest = carry
    # D² sampling by inverse CDF: P(j) = closest_j / Σ closest; side="right" never
    # lands on a zero-weight point.
    cdf = jnp.cumsum(closest)  # [N]
    u = jax.random.uniform(jax.random.fold_in(key_rest, c), (trials,)) * cdf[-1]
    cand = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), n - 1).astype(jnp.int32)
    d2 = _sq_dists(x, x_sq, x[cand]).at[cand, jnp.arange(trials)].set(0.0)  # [N, trials]
    new_closest = jnp.minimum(closest[:, None], d2)  # [N, trials]
    best = jnp.argmin(jnp.sum(new_closest, axis=0))  # the candidate lowering Σ D² most
    return (centres.at[c].set(x[cand[best]]), indices.at[c].set(cand[best]), new_closest[:, best])

  centres, indices, _ = jax.lax.fori_loop(1, k, body, (centres, indices, closest))
  return centres, indices


def _estep(x: jax.Array, x_sq: jax.Array, centres: jax.Array, chunk: int):
  """Assignment over row chunks: (labels [N], min sq dist [N], sums [K, D], counts [K])."""
  n, d = x.shape
  k = centres.shape[0]
  chunk = min(chunk, n)
  num_chunks = -(-n // chunk)
  c_sq = jnp.sum(centres * centres, axis=-1)  # [K]
  local = jnp.arange(chunk)

  def body(i, carry):
    labels, mind, sums, counts = carry
    start = jnp.minimum(i * chunk, n - chunk)
    xc = jax.lax.dynamic_slice(x, (start, 0), (chunk, d))  # [C, D]
    xs = jax.lax.dynamic_slice(x_sq, (start,), (chunk,))
    d2 = jnp.maximum(xs[:, None] - 2.0 * (xc @ centres.T) + c_sq[None, :], 0.0)  # [C, K]
    lab = jnp.argmin(d2, axis=1).astype(jnp.int32)  # [C]
    md = jnp.min(d2, axis=1)
    weight = (start + local >= i * chunk).astype(jnp.float32)  # rows not seen before
    sums = sums + jax.ops.segment_sum(xc * weight[:, None], lab, num_segments=k)
    counts = counts + jax.ops.segment_sum(weight, lab, num_segments=k)
    labels = jax.lax.dynamic_update_slice(labels, lab, (start,))
    mind = jax.lax.dynamic_update_slice(mind, md, (start,))
    return labels, mind, sums, counts

  init = (
      jnp.zeros((n,), jnp.int32),
      jnp.zeros((n,), jnp.float32),
      jnp.zeros((k, d), jnp.float32),
      jnp.zeros((k,), jnp.float32),
  )
  return jax.lax.fori_loop(0, num_chunks, body, init)


def _mstep(x: jax.Array, mind: jax.Array, sums: jax.Array, counts: jax.Array) -> jax.Array:
  """Centres = member means; empty clusters take the points farthest from their centres."""
  k = sums.shape[0]
  empty = counts == 0  # [K]
  means = sums / jnp.maximum(counts, 1.0)[:, None]
  far = jax.lax.top_k(mind, min(k, mind.shape[0]))[1]  # farthest points first
  rank = jnp.clip(jnp.cumsum(empty) - 1, 0, far.shape[0] - 1)  # r-th empty gets r-th farthest
  return jnp.where(empty[:, None], x[far[rank]], means)


@functools.partial(jax.jit, static_argnames=("max_iter", "chunk"))
def lloyd(
    x: jax.Array, centres: jax.Array, *, tol: float, max_iter: int, chunk: int = 2048
) -> KMeansResult:
  """Lloyd iterations from `centres` [K, D] until max shift < tol or max_iter updates."""
  x = x.astype(jnp.float32)
  x_sq = jnp.sum(x * x, axis=-1)  # [N]

  def cond(state):
    _, it, shift = state
    return (it < max_iter) & (shift >= tol)

  def body(state):
    centres, it, _ = state
    _, mind, sums, counts = _estep(x, x_sq, centres, chunk)
    new = _mstep(x, mind, sums, counts)
    shift = jnp.max(jnp.sqrt(jnp.sum((new - centres) ** 2, axis=-1)))
    return new, it + 1, shift

  init = (centres.astype(jnp.float32), jnp.int32(0), jnp.float32(jnp.inf))
  centres, iterations, shift = jax.lax.while_loop(cond, body, init)
  labels, mind, _, _ = _estep(x, x_sq, centres, chunk)  # labels of the final centres
  return KMeansResult(centres, labels, jnp.sum(mind), iterations, shift)


def kmeans(
    key: jax.Array,
    x: jax.Array,
    *,
    k: int,
    tol: float = 1e-4,
    max_iter: int = 300,
    trials: int = 0,
    chunk: int = 2048,
) -> KMeansResult:
  """k-means++ seeding (`trials` candidates per step, 0 = 2 + ⌊ln K⌋) then Lloyd."""
  if not 1 <= k <= x.shape[0]:
    raise ValueError(f"k-means needs 1 <= K <= N, got K={k}, N={x.shape[0]}")
  centres, _ = kmeans_plusplus(key, x, k=k, trials=trials)
  return lloyd(x, centres, tol=tol, max_iter=max_iter, chunk=chunk)
