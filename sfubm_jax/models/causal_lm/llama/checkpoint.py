"""Llama-family weights: random init, and Hugging Face folders in and out.

The folder reading (strict, streamed into the target shardings) is shared with OPT
(`causal_lm/hf_files.py`); this module holds the Llama names. HF names map onto the Flax
tree one to one: `model.layers.3.mlp.up_proj.weight` is params/model/layers_3/mlp/
up_proj/kernel, transposed (torch Linear is [out, in]); RMSNorm `weight` is `scale`,
Embedding `weight` is `embedding`; `lm_head.weight` exists only when the head is untied
(a tied checkpoint that still stores it is accepted: the copy is skipped). Rotary
`inv_freq` buffers of old checkpoints are derived, not loaded.
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
from sfubm_jax.models.causal_lm.llama.model import PARAM_AXES, LlamaConfig, LlamaForCausalLM
from sfubm_jax.models.causal_lm.lora import merge_lora


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
  return ".".join(parts + [hf_leaf]), leaf == "kernel"


def canonical_fn(config: LlamaConfig):
  def canonical(name: str) -> str | None:
    if name.endswith("rotary_emb.inv_freq"):
      return None
    if name == "lm_head.weight":
      return None if config.tie_word_embeddings else name
    return name if name.startswith("model.") else "model." + name

  return canonical


def read_config(folder: str | pathlib.Path, **overrides) -> LlamaConfig:
  path = pathlib.Path(folder) / "config.json"
  if not path.exists():
    raise UserError(f"{path} does not exist: give llm.checkpoint a Hugging Face Llama/Qwen2 "
                    "folder, a .gguf file or a shipped LLM name")
  return LlamaConfig.from_hf_dict(io_utils.read_json(path), **overrides)


def abstract_params(config: LlamaConfig) -> Any:
  """ShapeDtypeStructs of the model's variables {"params": ...}; allocates nothing."""
  model = LlamaForCausalLM(config)
  ids = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(lambda k: model.init(k, ids, attention_mask=ids + 1), jax.random.key(0))


def param_shardings(abstract: Any, config: LlamaConfig, mesh,
                    rules=logical.DEFAULT_RULES) -> Any:
  """NamedShardings of Llama variables on `mesh` by their logical axes."""
  return logical.param_shardings(abstract, mesh, PARAM_AXES, rules,
                                 {"heads": config.num_attention_heads,
                                  "kv_heads": config.num_key_value_heads})


def _flat_shardings(abstract, config, mesh, rules) -> dict:
  if mesh is None:
    return {}
  return traverse_util.flatten_dict(param_shardings(abstract, config, mesh, rules))


def _leaf_kind(config: LlamaConfig):
  def kind(path: tuple[str, ...], shape) -> tuple[str, float]:
    shared = shared_leaf_kind(path, shape)
    if shared is not None:
      return shared
    return "normal", config.initializer_range

  return kind


def init_llama(config: LlamaConfig, key: jax.Array, mesh=None,
               rules=logical.DEFAULT_RULES) -> Any:
  """Random variables {"params": ...} (weights ~ N(0, initializer_range²), norms 1, biases
  0, LoRA A ~ N(0, 1/in), B = 0), built directly in their shardings."""
  abstract_tree = abstract_params(config)
  abstract = traverse_util.flatten_dict(abstract_tree)
  shardings = _flat_shardings(abstract_tree, config, mesh, rules)
  flat = init_leaves(abstract, abstract, shardings, _leaf_kind(config), key,
                     config.pad_token_id)
  return traverse_util.unflatten_dict(flat)


def load_llama(path, *, mesh=None, dtype="float32", param_dtype="float32", lora_key=None,
               rules=logical.DEFAULT_RULES, **overrides) -> tuple[LlamaConfig, Any]:
  """(config, variables) from a Hugging Face Llama/Qwen2 folder, streamed into shardings."""
  folder = pathlib.Path(path)
  config = read_config(folder, dtype=dtype, param_dtype=param_dtype, **overrides)
  abstract_tree = abstract_params(config)
  abstract = traverse_util.flatten_dict(abstract_tree)
  shardings = _flat_shardings(abstract_tree, config, mesh, rules)
  flat = hf_files.load_weights(folder, family="Llama", example="meta-llama/Llama-2-7b-hf",
                               abstract=abstract, shardings=shardings, hf_name=hf_name,
                               canonical=canonical_fn(config), param_dtype=config.param_dtype)
  key = jax.random.key(0) if lora_key is None else lora_key
  lora = [p for p in abstract if hf_name(p) is None]
  flat.update(init_leaves(lora, abstract, shardings, _leaf_kind(config), key,
                          config.pad_token_id))
  return config, traverse_util.unflatten_dict(flat)


def save_llama(path, config: LlamaConfig, params: Any, *, extra_files=None,
               max_shard_bytes: int = hf_files.DEFAULT_MAX_SHARD_BYTES) -> None:
  """Writes `path` as a Hugging Face folder that transformers' Llama/Qwen2 class reads."""
  flat = traverse_util.flatten_dict(params)
  scale = config.lora_alpha / max(config.lora_rank, 1)

  def fetch(fpath):
    value = flat[fpath]
    lora_a = flat.get(fpath[:-1] + ("lora_a",))
    if fpath[-1] == "kernel" and lora_a is not None:
      value = merge_lora(value, lora_a, flat[fpath[:-1] + ("lora_b",)], scale)
    return np.asarray(jax.device_get(value))

  hf_files.save_folder(path, config.to_hf_dict(), flat, hf_name, fetch,
                       max_shard_bytes=max_shard_bytes, extra_files=extra_files)
