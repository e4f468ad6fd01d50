"""The one backbone interface Stage 2 talks to, implemented by OPT and the Llama family.

A backbone is a Flax module built from a frozen config dataclass (`OPTConfig`,
`LlamaConfig`) with the same contract:

  model(input_ids | inputs_embeds=[B, T, D], attention_mask, cache=None, logits_to_keep=0)
      -> (logits [B, T or keep, V] float32, new cache or None)
  model.apply(params, ids, method="embed_tokens") -> [B, T, config.embed_dim]

plus, through this module: `config_from_hf` (a HF config.json dict, dispatched on
`model_type`), `init_cache` (the KV cache), `init_random`/`load` (weights, built
directly in their shardings), `param_shardings` (logical axes -> mesh, causal_lm/
logical.py), LoRA on q/v (`lora_rank`, parameters named "lora"). A checkpoint is a
Hugging Face folder (either family), a `.gguf` file (Llama family, dequantised once into
a cached folder) or a shipped name (`shipped.py`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import flax.linen as nn

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.models.causal_lm import logical, shipped
from sfubm_jax.models.causal_lm.llama import checkpoint as llama_ckpt
from sfubm_jax.models.causal_lm.llama import model as llama
from sfubm_jax.models.causal_lm.opt import checkpoint as opt_ckpt
from sfubm_jax.models.causal_lm.opt import model as opt

FAMILIES = ("opt", "llama")
_MODEL_TYPES = {"opt": "opt", **{t: "llama" for t in llama.MODEL_TYPES}}


def family_of(config) -> str:
  if isinstance(config, opt.OPTConfig):
    return "opt"
  if isinstance(config, llama.LlamaConfig):
    return "llama"
  raise TypeError(f"not a backbone config: {type(config).__name__}")


def config_class(family: str):
  if family not in FAMILIES:
    raise UserError(f"LLM family {family!r} is not one of {FAMILIES}")
  return opt.OPTConfig if family == "opt" else llama.LlamaConfig


def config_from_hf(d: dict, **run) -> Any:
  """The backbone config of a HF config.json dict (`run`: dtype, remat, LoRA, ...)."""
  model_type = d.get("model_type")
  if model_type not in _MODEL_TYPES:
    raise UserError(f"config.json model_type {model_type!r} is not supported; supported: "
                    f"{', '.join(sorted(_MODEL_TYPES))}")
  return config_class(_MODEL_TYPES[model_type]).from_hf_dict(d, **run)


def build(config) -> nn.Module:
  return (opt.OPTForCausalLM if family_of(config) == "opt" else llama.LlamaForCausalLM)(config)


def init_cache(config, batch_size: int, max_len: int) -> dict:
  module = opt if family_of(config) == "opt" else llama
  return module.init_cache(config, batch_size, max_len)


def _ckpt(config):
  return opt_ckpt if family_of(config) == "opt" else llama_ckpt


def abstract_params(config) -> Any:
  return _ckpt(config).abstract_params(config)


def param_shardings(abstract, config, mesh, rules=logical.DEFAULT_RULES) -> Any:
  return _ckpt(config).param_shardings(abstract, config, mesh, rules)


def init_random(config, key, mesh=None, rules=logical.DEFAULT_RULES) -> Any:
  """Random variables as HF initialises the family, built in their shardings."""
  if family_of(config) == "opt":
    return opt_ckpt.init_opt(config, key, mesh=mesh, rules=rules)
  return llama_ckpt.init_llama(config, key, mesh=mesh, rules=rules)


def resolve_checkpoint(checkpoint: str, cache_dir=None) -> pathlib.Path:
  """The Hugging Face folder of `checkpoint`: a folder, a .gguf file or a shipped name."""
  from sfubm_jax.models.causal_lm.llama import gguf

  if shipped.is_shipped(checkpoint):
    return gguf.cached_folder(shipped.shipped_gguf(checkpoint), cache_dir)
  path = pathlib.Path(checkpoint)
  if path.suffix == ".gguf":
    return gguf.cached_folder(path, cache_dir)
  if not path.is_dir():
    raise UserError(f"llm.checkpoint {checkpoint!r} is neither a folder, a .gguf file nor a "
                    f"shipped LLM name ({', '.join(sorted(shipped.SHIPPED))})")
  return path


def load(checkpoint: str, *, mesh=None, rules=logical.DEFAULT_RULES, cache_dir=None,
         **run) -> tuple[Any, Any]:
  """(config, variables) of a checkpoint (see `resolve_checkpoint`), in their shardings.

  `run` holds how to run it: dtype, param_dtype, remat, lora_rank, lora_alpha, ...
  """
  folder = resolve_checkpoint(checkpoint, cache_dir)
  path = folder / "config.json"
  if not path.exists():
    raise UserError(f"{path} does not exist: llm.checkpoint must be a Hugging Face model "
                    "folder with config.json")
  model_type = io_utils.read_json(path).get("model_type")
  family = _MODEL_TYPES.get(model_type)
  if family is None:
    raise UserError(f"{path}: model_type {model_type!r} is not supported; supported: "
                    f"{', '.join(sorted(_MODEL_TYPES))}")
  loader = opt_ckpt.load_opt if family == "opt" else llama_ckpt.load_llama
  return loader(folder, mesh=mesh, rules=rules, **run)


def count_params(params: Any) -> int:
  return opt.count_params(params)
