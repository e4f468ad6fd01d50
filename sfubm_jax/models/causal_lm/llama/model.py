"""The Llama family (Llama 2/3, SmolLM2, Qwen2) in Flax Linen, equal to `transformers`' PyTorch.

Pre-norm decoder: RMSNorm (float32 statistics, weight applied after the cast back, as in
HF), rotary position embeddings on q and k (HF's half-split `rotate_half` layout;
`rope_theta` and `rope_scaling` of type default, linear or llama3), grouped-query
attention (K/V heads shared by groups of query heads; the KV cache holds K/V heads only),
scores · head_dim^−½ with the softmax in float32, SwiGLU feed-forward
(down(silu(gate(x)) · up(x))), an lm_head tied to the embedding or separate. Qwen2 is the
same network with biases on q/k/v (`attention_bias`). Positions come from the attention
mask (cumsum(mask)·mask − 1, as HF's `generate`), so left padding works.

Parameter tree (mirrors the HF names, see `checkpoint.py`):
  model/{embed_tokens, norm, layers_<i>/{input_layernorm, post_attention_layernorm,
         self_attn/{q,k,v,o}_proj, mlp/{gate,up,down}_proj}},  lm_head (untied only)

KV cache: {"index": int32 [], "layers": ({"k", "v"} [B, S, K, Dh], ...)} (K = KV heads).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sfubm_jax.errors import UserError
from sfubm_jax.models.causal_lm.attention import attend, causal_inputs, write_cache
from sfubm_jax.models.causal_lm.lora import LoRADense

MODEL_TYPES = ("llama", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")
_ATTENTION_IMPLS = ("xla", "cudnn")

# Logical axes of each parameter (regex on its path; see causal_lm/logical.py).
PARAM_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"embed_tokens/embedding$", ("vocab", "embed")),
    (r"lm_head/kernel$", ("embed", "vocab")),
    (r"q_proj/kernel$", ("embed", "heads")),
    (r"(k_proj|v_proj)/kernel$", ("embed", "kv_heads")),
    (r"q_proj/bias$", ("heads",)),
    (r"(k_proj|v_proj)/bias$", ("kv_heads",)),
    (r"o_proj/kernel$", ("heads", "embed")),
    (r"(gate_proj|up_proj)/kernel$", ("embed", "mlp")),
    (r"down_proj/kernel$", ("mlp", "embed")),
    (r"lora_a$", ("embed", None)),
    (r"q_proj/lora_b$", (None, "heads")),
    (r"v_proj/lora_b$", (None, "kv_heads")),
)


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Hugging Face Llama/Qwen2 config fields plus how to run it (dtypes, remat, LoRA)."""

  vocab_size: int = 32000
  hidden_size: int = 4096
  intermediate_size: int = 11008
  num_hidden_layers: int = 32
  num_attention_heads: int = 32
  num_key_value_heads: int | None = None  # None = num_attention_heads (no GQA)
  head_dim: int | None = None  # None = hidden_size // num_attention_heads
  max_position_embeddings: int = 4096
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  # HF rope_scaling as sorted (key, value) pairs ("rope_type", "factor", ...); () = none.
  rope_scaling: tuple = ()
  attention_bias: bool = False  # biases on q/k/v (Qwen2: True); o_proj never has one here
  tie_word_embeddings: bool = False
  initializer_range: float = 0.02
  pad_token_id: int = 0
  bos_token_id: int = 1
  eos_token_id: int = 2
  model_type: str = "llama"
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False
  lora_rank: int = 0
  lora_alpha: float = 16.0
  attention_impl: str = "xla"

  def __post_init__(self):
    if self.num_key_value_heads is None:
      object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
    if self.head_dim is None:
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
    if isinstance(self.rope_scaling, dict):
      object.__setattr__(self, "rope_scaling", tuple(sorted(self.rope_scaling.items())))
    object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)
    object.__setattr__(self, "param_dtype", jnp.dtype(self.param_dtype).name)
    if self.model_type not in MODEL_TYPES:
      raise UserError(f"model_type {self.model_type!r} is not a Llama-family architecture "
                      f"this project implements ({', '.join(MODEL_TYPES)})")
    if self.num_attention_heads % self.num_key_value_heads:
      raise UserError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                      f"num_key_value_heads {self.num_key_value_heads}")
    if self.rope_type not in ROPE_TYPES:
      raise UserError(f"rope_scaling type {self.rope_type!r} is not supported; supported: "
                      f"{', '.join(ROPE_TYPES)}")
    if self.attention_impl not in _ATTENTION_IMPLS:
      raise UserError(f"attention_impl {self.attention_impl!r} is not one of {_ATTENTION_IMPLS}")

  @property
  def rope_type(self) -> str:
    scaling = dict(self.rope_scaling)
    return scaling.get("rope_type", scaling.get("type", "default"))

  @property
  def embed_dim(self) -> int:
    """Width of `inputs_embeds` (the backbone interface)."""
    return self.hidden_size

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any], **overrides) -> LlamaConfig:
    """From a Hugging Face `config.json` dict (v4 rope_theta/rope_scaling or v5
    rope_parameters); `overrides` set any field (e.g. dtype)."""
    model_type = d.get("model_type", "llama")
    if model_type not in MODEL_TYPES:
      raise UserError(f"config.json has model_type {model_type!r}; the Llama family covers "
                      f"{', '.join(MODEL_TYPES)}")
    if d.get("use_sliding_window"):
      raise UserError("config.json turns on use_sliding_window, which is not implemented")
    if d.get("hidden_act", "silu") != "silu":
      raise UserError(f"config.json hidden_act {d['hidden_act']!r}: only silu is implemented")
    if d.get("mlp_bias"):
      raise UserError("config.json sets mlp_bias, which is not implemented")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k in names and v is not None}
    rope = dict(d.get("rope_parameters") or {})
    if "rope_theta" in rope:
      kwargs["rope_theta"] = rope.pop("rope_theta")
    if not rope:
      rope = dict(d.get("rope_scaling") or {})
    if rope.get("rope_type", rope.get("type", "default")) == "default":
      rope = {}
    kwargs["rope_scaling"] = tuple(sorted(rope.items()))
    kwargs["model_type"] = model_type
    if model_type == "qwen2":
      kwargs["attention_bias"] = True
    eos = d.get("eos_token_id")
    if isinstance(eos, list | tuple):
      kwargs["eos_token_id"] = int(eos[0])
    if d.get("pad_token_id") is None:
      kwargs["pad_token_id"] = kwargs.get("eos_token_id", cls.eos_token_id)
    for key in ("dtype", "param_dtype", "remat", "lora_rank", "lora_alpha", "attention_impl"):
      kwargs.pop(key, None)  # how to run is ours, not the checkpoint's
    unknown = set(overrides) - names
    if unknown:
      raise UserError(f"unknown LlamaConfig fields {sorted(unknown)}; fields are {sorted(names)}")
    kwargs.update(overrides)
    return cls(**kwargs)

  def to_hf_dict(self) -> dict[str, Any]:
    """The `config.json` dict that `transformers` (v5) reads for this architecture."""
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
            "rms_norm_eps", "tie_word_embeddings", "initializer_range", "pad_token_id",
            "bos_token_id", "eos_token_id")
    d = {k: getattr(self, k) for k in keys}
    rope = {"rope_type": "default", **dict(self.rope_scaling), "rope_theta": self.rope_theta}
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[self.model_type]
    d.update(model_type=self.model_type, architectures=[arch], hidden_act="silu",
             rope_parameters=rope, dtype=self.param_dtype, use_cache=True)
    if self.model_type == "llama":
      d.update(attention_bias=self.attention_bias, mlp_bias=False)
    return d


def init_cache(config: LlamaConfig, batch_size: int, max_len: int) -> dict[str, Any]:
  """An empty KV cache of `max_len` slots per row (K/V heads only), in the compute dtype."""
  shape = (batch_size, max_len, config.num_key_value_heads, config.head_dim)
  zeros = lambda: jnp.zeros(shape, config.dtype)
  layers = tuple({"k": zeros(), "v": zeros()} for _ in range(config.num_hidden_layers))
  return {"index": jnp.zeros((), jnp.int32), "layers": layers}


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
  """Inverse frequencies [Dh/2] float32 as HF computes them, scaling applied."""
  dim = config.head_dim
  inv = 1.0 / (np.float32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
  inv = inv.astype(np.float32)
  scaling = dict(config.rope_scaling)
  if config.rope_type == "linear":
    return (inv / np.float32(scaling["factor"])).astype(np.float32)
  if config.rope_type == "llama3":
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)
  return inv


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """x [B, T, H, Dh] rotated (half-split layout); cos, sin [B, T, Dh] float32."""
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  cos, sin = cos[:, :, None].astype(x.dtype), sin[:, :, None].astype(x.dtype)
  return x * cos + rotated * sin


class RMSNorm(nn.Module):
  eps: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x):  # [..., D]
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return scale.astype(self.dtype) * x32.astype(self.dtype)


def _dense(cfg: LlamaConfig, features: int, name: str, *, use_bias=False, lora=False):
  return LoRADense(features, use_bias=use_bias, rank=cfg.lora_rank if lora else 0,
                   alpha=cfg.lora_alpha, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                   kernel_init=nn.initializers.normal(cfg.initializer_range), name=name)


class LlamaAttention(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, h, cos, sin, allowed, layer_cache, index):
    # h [B, T, D]; cos/sin [B, T, Dh]; allowed [B, 1, T, S]; layer_cache {"k","v"} or None.
    cfg = self.config
    b, t, _ = h.shape
    n, kv, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = _dense(cfg, n * dh, "q_proj", use_bias=cfg.attention_bias, lora=True)(h)
    k = _dense(cfg, kv * dh, "k_proj", use_bias=cfg.attention_bias)(h)
    v = _dense(cfg, kv * dh, "v_proj", use_bias=cfg.attention_bias, lora=True)(h)
    q = apply_rope(q.reshape(b, t, n, dh), cos, sin)  # [B, T, N, Dh]
    k = apply_rope(k.reshape(b, t, kv, dh), cos, sin)  # [B, T, K, Dh]
    v = v.reshape(b, t, kv, dh)
    new_cache = None
    if layer_cache is not None:
      new_cache = write_cache(layer_cache, k, v, index)
      k, v = new_cache["k"], new_cache["v"]  # [B, S, K, Dh]
    if cfg.attention_impl == "cudnn":
      out = jax.nn.dot_product_attention(q, k, v, mask=allowed, scale=dh**-0.5,
                                         implementation="cudnn")
    else:
      out = attend(q, k, v, allowed, scale=dh**-0.5, dtype=cfg.dtype)  # [B, T, N·Dh]
    out = out.reshape(b, t, n * dh)
    return _dense(cfg, cfg.hidden_size, "o_proj")(out), new_cache


class LlamaMLP(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, x):  # [B, T, D]
    cfg = self.config
    gate = _dense(cfg, cfg.intermediate_size, "gate_proj")(x)
    up = _dense(cfg, cfg.intermediate_size, "up_proj")(x)
    return _dense(cfg, cfg.hidden_size, "down_proj")(jax.nn.silu(gate) * up)


class LlamaDecoderLayer(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, h, cos, sin, allowed, layer_cache, index):
    cfg = self.config
    norm = lambda name: RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype, name=name)
    x, new_cache = LlamaAttention(cfg, name="self_attn")(norm("input_layernorm")(h), cos, sin,
                                                         allowed, layer_cache, index)
    h = h + x
    h = h + LlamaMLP(cfg, name="mlp")(norm("post_attention_layernorm")(h))
    return h, new_cache


class LlamaModel(nn.Module):
  config: LlamaConfig

  def setup(self):
    cfg = self.config
    self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.hidden_size,
                                 embedding_init=nn.initializers.normal(cfg.initializer_range),
                                 dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    layer_cls = nn.remat(LlamaDecoderLayer) if cfg.remat else LlamaDecoderLayer
    self.layers = [layer_cls(cfg) for _ in range(cfg.num_hidden_layers)]
    self.norm = RMSNorm(cfg.rms_norm_eps, cfg.dtype, cfg.param_dtype)

  def embed(self, input_ids):  # [B, T] -> [B, T, D]
    return self.embed_tokens(input_ids)

  def attend(self, h):  # tied head: [B, T, D] -> [B, T, V]
    return self.embed_tokens.attend(h)

  def __call__(self, inputs_embeds, allowed, positions, cache):
    cfg = self.config
    inv = jnp.asarray(rope_inv_freq(cfg))  # [Dh/2]
    angles = positions.astype(jnp.float32)[..., None] * inv  # [B, T, Dh/2]
    angles = jnp.concatenate([angles, angles], axis=-1)  # [B, T, Dh]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    h = inputs_embeds.astype(cfg.dtype)
    index = None if cache is None else cache["index"]
    new_layers = []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else cache["layers"][i]
      h, new_layer_cache = layer(h, cos, sin, allowed, layer_cache, index)
      new_layers.append(new_layer_cache)
    h = self.norm(h)
    new_cache = None
    if cache is not None:
      new_cache = {"index": index + inputs_embeds.shape[1], "layers": tuple(new_layers)}
    return h, new_cache


class LlamaForCausalLM(nn.Module):
  """Llama decoder + lm_head. Returns (logits [B, T, V] float32, new cache or None)."""

  config: LlamaConfig

  def setup(self):
    cfg = self.config
    self.model = LlamaModel(cfg)
    if not cfg.tie_word_embeddings:
      self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False, dtype=cfg.dtype,
                              param_dtype=cfg.param_dtype,
                              kernel_init=nn.initializers.normal(cfg.initializer_range))

  def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
    """Token embeddings [B, T, hidden_size]: the width `inputs_embeds` takes."""
    return self.model.embed(input_ids)

  def __call__(self, input_ids=None, *, inputs_embeds=None, attention_mask, position_ids=None,
               cache=None, deterministic: bool = True, logits_to_keep: int = 0):
    """Logits for T new tokens given as ids [B, T] or embeddings [B, T, D].

    The same contract as `OPTForCausalLM` (see causal_lm/attention.py for the mask and
    cache conventions); `deterministic` is accepted for the interface (no dropout here).
    """
    del deterministic
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("give exactly one of input_ids and inputs_embeds")
    if inputs_embeds is None:
      inputs_embeds = self.model.embed(input_ids)
    b, t = inputs_embeds.shape[:2]
    if attention_mask is None:
      attention_mask = jnp.ones((b, t) if cache is None else (b, cache["layers"][0]["k"].shape[1]),
                                jnp.int32)
    allowed, positions = causal_inputs(attention_mask, None if cache is None else cache["index"],
                                       t, position_ids)
    h, new_cache = self.model(inputs_embeds, allowed, positions, cache)
    if logits_to_keep:
      h = h[:, -logits_to_keep:]
    logits = self.model.attend(h) if self.config.tie_word_embeddings else self.lm_head(h)
    return logits.astype(jnp.float32), new_cache
