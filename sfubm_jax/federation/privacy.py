"""Privacy figures of an upload (SPEC §3), computed by the client that knows e.

- `sim` = mean_i cos(e_i, ẽ_i): how much of an item's own semantics its upload keeps
  (paper Table 5).
- `reid@1` = share of items whose upload's nearest raw vector is the item itself: the
  success rate of an honest-but-curious server that encodes the public item texts and
  matches each upload to its closest text (beyond the paper).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from sfubm_jax.federation import neighbours


@jax.jit
def mean_cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  """mean_i cos(a_i, b_i) for a, b [N, D]; a scalar."""
  return jnp.mean(jnp.sum(neighbours.normalize(a) * neighbours.normalize(b), axis=-1))


@functools.partial(jax.jit, static_argnames=("tile",))
def reidentification_at_1(upload: jax.Array, e: jax.Array, *, tile: int = 2048) -> jax.Array:
  """Share of i with argmax_j cos(ẽ_i, e_j) = i; a scalar. Memory O(tile²)."""
  guess = neighbours.nearest_neighbour(upload, e, tile=tile)  # [N]
  return jnp.mean(guess == jnp.arange(e.shape[0], dtype=guess.dtype))


def privacy_figures(upload: jax.Array, e: jax.Array, *, tile: int = 2048) -> dict[str, float]:
  """{"sim", "reid@1"} of an upload ẽ [N, D] against the raw vectors e [N, D]."""
  return {
      "sim": float(mean_cosine(e, upload)),
      "reid@1": float(reidentification_at_1(upload, e, tile=tile)),
  }
