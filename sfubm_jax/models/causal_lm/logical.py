"""Parameter sharding by logical axes, shared by every causal-LM family (MaxText's habit).

Each family names the logical axes of its parameters (`PARAM_AXES` in its `model.py`: a
regex on the "/"-joined parameter path and one logical name per dimension, e.g. q_proj's
kernel is ("embed", "heads")). The logical -> mesh mapping is config
(`config.mesh.logical_axes`, default `DEFAULT_RULES`), the same for both families:

  vocab -> tensor, embed -> fsdp, heads -> tensor, kv_heads -> tensor, mlp -> tensor

which is Megatron-style tensor parallelism combined with FSDP: matrices that fan out
(q/k/v, fc1, gate/up) are split [in over fsdp, out over tensor]; those that fan back in
(out_proj/o_proj, fc2/down) [in over tensor, out over fsdp], so one attention or MLP block
needs a single reduction over `tensor`; the token embedding is [vocab over tensor, width
over fsdp], so a tied head yields logits sharded over the vocabulary.

A dimension that its mesh axis does not divide stays unsplit on that axis (same numbers,
less memory saved). Head axes split by whole heads: `heads`/`kv_heads` are sharded only
when the head count (not the flattened heads × head_dim width) divides the axis, so
grouped-query models with fewer KV heads than tensor devices replicate their K/V
projections (as Megatron and vLLM do) instead of cutting a head in two. A rule naming a
logical axis that is not mapped, or a mesh axis that does not exist, is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sfubm_jax.errors import UserError

LogicalRules = Sequence[tuple[str, str | None]]
ParamAxes = Sequence[tuple[str, tuple[str | None, ...]]]

# The logical -> mesh mapping of configs/common.py (config.mesh.logical_axes).
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", "tensor"), ("embed", "fsdp"), ("heads", "tensor"), ("kv_heads", "tensor"),
    ("mlp", "tensor"),
)
HEAD_AXES = ("heads", "kv_heads")


def path_str(path) -> str:
  """"params/decoder/layers_0/fc1/kernel" for a jax tree path."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _mapping(rules: LogicalRules, mesh: Mesh) -> dict[str, str | None]:
  out = {}
  for logical, axis in rules:
    if axis is not None and axis not in mesh.shape:
      raise UserError(f"logical axis {logical!r} maps to mesh axis {axis!r}, which is not one "
                      f"of the mesh axes {tuple(mesh.shape)} (config.mesh.logical_axes)")
    out[str(logical)] = axis
  return out


def logical_axes(name: str, shape: tuple[int, ...], param_axes: ParamAxes):
  """The logical axis names of one parameter (first matching rule); () = replicated."""
  for pattern, axes in param_axes:
    if re.search(pattern, name):
      if len(axes) != len(shape):
        raise ValueError(f"rule {pattern!r} has {len(axes)} axes, {name} has shape {shape}")
      return axes
  return ()


def partition_spec(name: str, shape: tuple[int, ...], mesh: Mesh, param_axes: ParamAxes,
                   rules: LogicalRules = DEFAULT_RULES,
                   head_counts: Mapping[str, int] | None = None) -> PartitionSpec:
  """The spec of one parameter: its logical axes mapped to mesh axes that divide it."""
  mapping = _mapping(rules, mesh)
  head_counts = dict(head_counts or {})
  spec = []
  for logical, dim in zip(logical_axes(name, shape, param_axes), shape):  # () = replicated
    if logical is None:
      spec.append(None)
      continue
    if logical not in mapping:
      raise UserError(f"parameter {name} names logical axis {logical!r}, which "
                      f"config.mesh.logical_axes does not map (it maps {sorted(mapping)})")
    axis = mapping[logical]
    size = head_counts.get(logical, dim) if logical in HEAD_AXES else dim
    spec.append(axis if axis is not None and size % mesh.shape[axis] == 0 else None)
  return PartitionSpec(*spec)


def param_shardings(params_or_shapes: Any, mesh: Mesh, param_axes: ParamAxes,
                    rules: LogicalRules = DEFAULT_RULES,
                    head_counts: Mapping[str, int] | None = None) -> Any:
  """NamedShardings mirroring a params pytree (arrays or ShapeDtypeStructs)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: NamedSharding(mesh, partition_spec(path_str(path), tuple(x.shape), mesh,
                                                         param_axes, rules, head_counts)),
      params_or_shapes,
  )


def rules_from_config(pairs) -> tuple[tuple[str, str | None], ...]:
  """config.mesh.logical_axes (pairs; "" or None = replicated) as rules."""
  out = []
  for pair in pairs:
    if len(pair) != 2:
      raise UserError(f"config.mesh.logical_axes entry {pair!r} is not (logical, mesh axis)")
    out.append((str(pair[0]), pair[1] or None))
  return tuple(out)
