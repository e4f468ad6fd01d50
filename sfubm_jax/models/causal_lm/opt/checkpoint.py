"""OPT weights: random init, and Hugging Face folders in and out.

Reading and writing the folder (strict, streamed into the target shardings) is shared
with the other families (`causal_lm/hf_files.py`); this module holds OPT's names. Saving
writes config.json + safetensors that `transformers.OPTForCausalLM.from_pretrained` reads
(LoRA adapters, if any, are merged into their kernels).

HF names map onto the Flax tree one to one: `model.decoder.layers.3.fc1.weight` is
params/decoder/layers_3/fc1/kernel, transposed (torch Linear is [out, in]); LayerNorm
`weight` is `scale`, Embedding `weight` is `embedding`; `lm_head.weight` is tied.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.models.causal_lm import hf_files, logical
from sfubm_jax.models.causal_lm.init import init_leaves, shared_leaf_kind
from sfubm_jax.models.causal_lm.lora import merge_lora
from sfubm_jax.models.causal_lm.opt.model import PARAM_AXES, OPTConfig, OPTForCausalLM

DEFAULT_MAX_SHARD_BYTES = hf_files.DEFAULT_MAX_SHARD_BYTES


# ---------------------------------------------------------------- names

def hf_name(path: tuple[str, ...]) -> tuple[str, bool] | None:
  """(HF tensor name, transpose?) of a Flax param path; None for LoRA params (not in HF)."""
  if path and path[0] == "params":
    path = path[1:]
  *mods, leaf = path
  if "lora" in leaf:
    return None
  parts = []
  for m in mods:
    parts.extend(m.split("_", 1) if m.startswith("layers_") else [m])
  hf_leaf = "bias" if leaf == "bias" else "weight"
  return "model." + ".".join(parts + [hf_leaf]), leaf == "kernel"


def _canonical(name: str) -> str | None:
  """HF names as saved by OPTForCausalLM or by OPTModel (facebook/opt-*); None = tied head."""
  if name == "lm_head.weight":
    return None
  return name if name.startswith("model.") else "model." + name


def read_config(folder: str | pathlib.Path, **overrides) -> OPTConfig:
  path = pathlib.Path(folder) / "config.json"
  if not path.exists():
    raise UserError(f"{path} does not exist: give llm.checkpoint a Hugging Face OPT folder")
  return OPTConfig.from_hf_dict(io_utils.read_json(path), **overrides)


# ---------------------------------------------------------------- public API

def abstract_params(config: OPTConfig) -> Any:
  """ShapeDtypeStructs of the model's variables {"params": ...}; allocates nothing."""
  model = OPTForCausalLM(config)
  ids = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(lambda k: model.init(k, ids, attention_mask=ids + 1), jax.random.key(0))


def param_shardings(abstract: Any, config: OPTConfig, mesh, rules=logical.DEFAULT_RULES) -> Any:
  """NamedShardings of OPT variables on `mesh` by their logical axes."""
  return logical.param_shardings(abstract, mesh, PARAM_AXES, rules,
                                 {"heads": config.num_attention_heads,
                                  "kv_heads": config.num_attention_heads})


def _flat_shardings(abstract, config, mesh, rules) -> dict:
  if mesh is None:
    return {}
  return traverse_util.flatten_dict(param_shardings(abstract, config, mesh, rules))


def _leaf_kind(config: OPTConfig):
  def kind(path: tuple[str, ...], shape) -> tuple[str, float]:
    """How HF initialises a parameter: (kind, std), kind in normal|normal_pad|zeros|ones."""
    shared = shared_leaf_kind(path, shape)
    if shared is not None:
      return shared
    if "embed_tokens" in path:
      return "normal_pad", config.init_std  # HF zeroes the padding row
    return "normal", config.init_std

  return kind


def init_opt(config: OPTConfig, key: jax.Array, mesh=None,
             rules=logical.DEFAULT_RULES) -> Any:
  """Random variables {"params": ...} as HF initialises OPT, built in their shardings.

  Linear and embedding weights ~ N(0, init_std²) (the padding row of embed_tokens zero),
  biases 0, LayerNorm scales 1; LoRA A ~ N(0, 1/in), B = 0.
  """
  abstract_tree = abstract_params(config)
  abstract = traverse_util.flatten_dict(abstract_tree)
  shardings = _flat_shardings(abstract_tree, config, mesh, rules)
  flat = init_leaves(abstract, abstract, shardings, _leaf_kind(config), key,
                     config.pad_token_id)
  return traverse_util.unflatten_dict(flat)


def load_opt(path, *, mesh=None, dtype="float32", param_dtype="float32", lora_key=None,
             rules=logical.DEFAULT_RULES, **overrides) -> tuple[OPTConfig, Any]:
  """(config, variables) from a Hugging Face OPT folder, streamed into their shardings.

  `overrides` set OPTConfig fields (remat, lora_rank, ...). LoRA adapters, absent from HF
  checkpoints, are initialised from `lora_key` (default key 0): A ~ N(0, 1/in), B = 0.
  """
  folder = pathlib.Path(path)
  config = read_config(folder, dtype=dtype, param_dtype=param_dtype, **overrides)
  abstract_tree = abstract_params(config)
  abstract = traverse_util.flatten_dict(abstract_tree)
  shardings = _flat_shardings(abstract_tree, config, mesh, rules)
  flat = hf_files.load_weights(folder, family="OPT", example="facebook/opt-6.7b",
                               abstract=abstract, shardings=shardings, hf_name=hf_name,
                               canonical=_canonical, param_dtype=config.param_dtype)
  key = jax.random.key(0) if lora_key is None else lora_key
  lora = [p for p in abstract if hf_name(p) is None]
  flat.update(init_leaves(lora, abstract, shardings, _leaf_kind(config), key,
                          config.pad_token_id))
  return config, traverse_util.unflatten_dict(flat)


def save_opt(path, config: OPTConfig, params: Any, *,
             max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> None:
  """Writes `path` as a Hugging Face OPT folder (config.json + safetensors), replacing it."""
  flat = traverse_util.flatten_dict(params)
  scale = config.lora_alpha / max(config.lora_rank, 1)

  def fetch(fpath):
    value = flat[fpath]
    lora_a = flat.get(fpath[:-1] + ("lora_a",))
    if fpath[-1] == "kernel" and lora_a is not None:
      value = merge_lora(value, lora_a, flat[fpath[:-1] + ("lora_b",)], scale)
    return np.asarray(jax.device_get(value))

  hf_files.save_folder(path, config.to_hf_dict(), flat, hf_name, fetch,
                       max_shard_bytes=max_shard_bytes)
