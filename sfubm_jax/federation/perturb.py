"""Client-side perturbation of item text vectors (SPEC §3, Eq. 2–6), pure and jitted.

    ê_i = e_i + λ·ε_i,  ε_i ~ N(0, I)       ε_i from fold_in(key, i)
    j*(i) = argmax_{j≠i} cos(ê_i, ê_j)      tiled, O(tile²) memory (`neighbours`)
    ẽ_i = ê_{j*(i)}  ("perturbed")  or  e_{j*(i)}  ("original")

Only ẽ leaves the client; e, ê and j* stay local.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from sfubm_jax.federation import neighbours

REPLACE_WITH = ("perturbed", "original")


@functools.partial(jax.jit, static_argnames=("chunk",))
def add_noise(key: jax.Array, e: jax.Array, noise_scale, *, chunk: int = 4096) -> jax.Array:
  """ê = e + λ·ε, ε ~ N(0, I). [N, D] -> [N, D] float32.

  Row i's noise comes from fold_in(key, i), so it does not depend on `chunk`; rows are
  drawn `chunk` at a time, so no N × D buffer of random bits is ever materialised.
  """
  n, d = e.shape
  chunk = max(1, min(chunk, n))

  def body(c, out):
    start = jnp.minimum(c * chunk, n - chunk)  # the last chunk is shifted back, not padded
    rows = start + jnp.arange(chunk, dtype=jnp.uint32)
    eps = jax.vmap(lambda r: jax.random.normal(jax.random.fold_in(key, r), (d,)))(rows)
    block = jax.lax.dynamic_slice_in_dim(e, start, chunk).astype(jnp.float32)
    return jax.lax.dynamic_update_slice_in_dim(out, block + noise_scale * eps, start, 0)

  return jax.lax.fori_loop(0, -(-n // chunk), body, e.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("replace_with", "tile"))
def perturb(
    key: jax.Array,
    e: jax.Array,
    noise_scale: float | jax.Array,
    *,
    replace_with: str = "perturbed",
    tile: int = 2048,
) -> tuple[jax.Array, jax.Array]:
  """Returns (upload ẽ [N, D] float32, j* [N] int32) for raw vectors e [N, D].

  `noise_scale` is traced, so a λ sweep reuses one compilation.
  """
  if replace_with not in REPLACE_WITH:
    raise ValueError(f"replace_with must be one of {REPLACE_WITH}, not {replace_with!r}")
  if e.shape[0] < 2:
    raise ValueError(f"perturbation needs at least 2 items to pick a neighbour, got {e.shape[0]}")
  e_hat = add_noise(key, e, noise_scale)  # [N, D]
  j_star = neighbours.nearest_other(e_hat, tile=tile)  # [N]
  source = e_hat if replace_with == "perturbed" else e.astype(jnp.float32)
  return jnp.take(source, j_star, axis=0), j_star
