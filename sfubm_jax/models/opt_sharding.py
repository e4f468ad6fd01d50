"""Partition rules of OPT parameters over the ("data", "fsdp", "tensor") mesh.

Megatron-style tensor parallelism combined with FSDP: matrices that fan out (q/k/v,
fc1) are split [in over fsdp, out over tensor]; those that fan back in (out_proj, fc2)
are transposed [in over tensor, out over fsdp], so one attention or MLP block needs a
single reduction over `tensor`. The token embedding is split [vocab over tensor, width
over fsdp]: the tied lm_head then yields logits sharded over the vocabulary instead of
an all-reduce of [B, T, V] partial sums. Biases follow their kernel's output dim;
LayerNorms, positions and the small 350m projections are replicated.

A dimension that an axis does not divide stays unsplit on that axis (e.g. 2050 position
rows): same numbers, just less memory saved.
"""

from __future__ import annotations

import re
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# (regex on the "/"-joined parameter path, mesh axis per dimension); first match wins.
RULES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"embed_tokens/embedding$", ("tensor", "fsdp")),
    (r"(q_proj|k_proj|v_proj|fc1)/kernel$", ("fsdp", "tensor")),
    (r"(q_proj|k_proj|v_proj|fc1)/bias$", ("tensor",)),
    (r"(out_proj|fc2)/kernel$", ("tensor", "fsdp")),
    (r"lora_a$", ("fsdp", None)),
    (r"lora_b$", (None, "tensor")),
)


def path_str(path) -> str:
  """"params/decoder/layers_0/fc1/kernel" for a jax tree path."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def partition_spec(name: str, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
  """The spec of one parameter: its rule, minus axes that do not divide the dimension."""
  for pattern, axes in RULES:
    if re.search(pattern, name):
      if len(axes) != len(shape):
        raise ValueError(f"rule {pattern!r} has {len(axes)} axes, {name} has shape {shape}")
      return PartitionSpec(*(
          ax if ax is not None and dim % mesh.shape[ax] == 0 else None
          for ax, dim in zip(axes, shape)
      ))
  return PartitionSpec()


def param_shardings(params_or_shapes: Any, mesh: Mesh) -> Any:
  """NamedShardings mirroring a params pytree (arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: NamedSharding(mesh, partition_spec(path_str(path), tuple(x.shape), mesh)),
      params_or_shapes,
  )


def shard_params(params: Any, mesh: Mesh) -> Any:
  """`params` placed on `mesh` by the rules above."""
  return jax.device_put(params, param_shardings(params, mesh))
