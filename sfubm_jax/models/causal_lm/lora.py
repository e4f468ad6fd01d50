"""Dense layer with an optional low-rank adapter (LoRA, Hu et al. 2021).

y = x W + b + (alpha / r) · (x A) B with A [in, r] ~ N(0, 1/in) and B [r, out] = 0, so a
fresh adapter leaves the layer unchanged. The adapter parameters are named `lora_a` and
`lora_b`: a trainer selects them by the substring "lora" in the parameter path.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def lora_mask(params: Any) -> Any:
  """A pytree of bools over `params`: True where the path names a LoRA parameter."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: any("lora" in str(getattr(k, "key", k)) for k in path), params
  )


def merge_lora(kernel: jax.Array, lora_a: jax.Array, lora_b: jax.Array, scale: float):
  """The plain kernel equal to `kernel` plus its adapter (for export to Hugging Face)."""
  delta = (lora_a.astype(jnp.float32) @ lora_b.astype(jnp.float32)) * scale  # [in, out]
  return (kernel.astype(jnp.float32) + delta).astype(kernel.dtype)


class LoRADense(nn.Module):
  """`nn.Dense` (kernel [in, out], bias [out]) plus a rank-`rank` adapter when rank > 0."""

  features: int
  use_bias: bool = True
  rank: int = 0
  alpha: float = 16.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:  # [..., in] -> [..., out]
    in_features = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (in_features, self.features), self.param_dtype)
    x = x.astype(self.dtype)
    y = jnp.dot(x, kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    if self.rank > 0:
      lora_a = self.param(
          "lora_a", nn.initializers.normal(in_features**-0.5), (in_features, self.rank),
          self.param_dtype,
      )
      lora_b = self.param("lora_b", nn.initializers.zeros, (self.rank, self.features),
                          self.param_dtype)
      scale = self.alpha / self.rank
      y = y + jnp.dot(jnp.dot(x, lora_a.astype(self.dtype)), lora_b.astype(self.dtype)) * scale
    return y
