"""OPT (Zhang et al. 2022) in Flax Linen, numerically equal to `transformers`' PyTorch OPT.

Covers every published OPT layout: pre-LN models (125m, 1.3b, 2.7b, 6.7b, ...) and the
post-LN 350m with `project_in`/`project_out` (word_embed_proj_dim != hidden_size). As in
Hugging Face: learned positions offset by 2 and computed from the attention mask
(cumsum(mask)·mask − 1, so left padding works), queries scaled after their projection,
softmax in float32, LayerNorm eps 1e-5, ReLU feed-forward, lm_head tied to the token
embedding. The compute dtype (bf16 on GPU) is separate from the parameter dtype.

Parameter tree (mirrors the HF names, see `checkpoint.py`):
  decoder/{embed_tokens, embed_positions, project_in?, project_out?, final_layer_norm?,
           layers_<i>/{self_attn/{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2,
                       final_layer_norm}}

KV cache (decoding): {"index": int32 [], "layers": ({"k", "v"} [B, S, H, Dh], ...)}; with a
cache, `attention_mask` covers all S cache slots and the new tokens are written at
slots index .. index+T−1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sfubm_jax.errors import UserError
from sfubm_jax.models.causal_lm.attention import attend, causal_inputs
from sfubm_jax.models.causal_lm.lora import LoRADense

POSITION_OFFSET = 2  # OPT's learned positions start at row 2 (fairseq padding legacy).
LN_EPS = 1e-5
_ACTIVATIONS = {"relu": jax.nn.relu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}
_ATTENTION_IMPLS = ("xla", "cudnn")

# Logical axes of each parameter (regex on its path; see causal_lm/logical.py).
PARAM_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"embed_tokens/embedding$", ("vocab", "embed")),
    (r"(q_proj|k_proj|v_proj)/kernel$", ("embed", "heads")),
    (r"(q_proj|k_proj|v_proj)/bias$", ("heads",)),
    (r"fc1/kernel$", ("embed", "mlp")),
    (r"fc1/bias$", ("mlp",)),
    (r"out_proj/kernel$", ("heads", "embed")),
    (r"fc2/kernel$", ("mlp", "embed")),
    (r"lora_a$", ("embed", None)),
    (r"lora_b$", (None, "heads")),
)


@dataclasses.dataclass(frozen=True)
class OPTConfig:
  """Hugging Face OPTConfig fields plus how to run it (dtypes, remat, LoRA, attention)."""

  vocab_size: int = 50272
  hidden_size: int = 768
  num_hidden_layers: int = 12
  ffn_dim: int = 3072
  num_attention_heads: int = 12
  max_position_embeddings: int = 2048
  word_embed_proj_dim: int | None = None  # None = hidden_size
  do_layer_norm_before: bool = True
  enable_bias: bool = True
  remove_final_layer_norm: bool = False
  layer_norm_elementwise_affine: bool = True
  activation_function: str = "relu"
  dropout: float = 0.1
  attention_dropout: float = 0.0
  init_std: float = 0.02
  pad_token_id: int = 1
  bos_token_id: int = 2
  eos_token_id: int = 2
  # Compute dtype of activations and matmuls; dtype the parameters are stored in.
  dtype: str = "float32"
  param_dtype: str = "float32"
  # Rematerialise each decoder layer in the backward pass (saves activation memory).
  remat: bool = False
  # LoRA on q_proj and v_proj: rank (0 = off) and alpha (scale alpha / rank).
  lora_rank: int = 0
  lora_alpha: float = 16.0
  # "xla" (einsum + float32 softmax, runs everywhere) or "cudnn" (fused kernel, GPU only;
  # used where no attention dropout applies; 4% faster Stage-2 step on an H200).
  attention_impl: str = "xla"

  def __post_init__(self):
    if self.word_embed_proj_dim is None:
      object.__setattr__(self, "word_embed_proj_dim", self.hidden_size)
    object.__setattr__(self, "dtype", jnp.dtype(self.dtype).name)
    object.__setattr__(self, "param_dtype", jnp.dtype(self.param_dtype).name)
    if self.hidden_size % self.num_attention_heads:
      raise UserError(f"OPT hidden_size {self.hidden_size} is not a multiple of "
                      f"num_attention_heads {self.num_attention_heads}")
    if self.activation_function not in _ACTIVATIONS:
      raise UserError(f"OPT activation_function {self.activation_function!r} is not one of "
                      f"{sorted(_ACTIVATIONS)}")
    if self.attention_impl not in _ATTENTION_IMPLS:
      raise UserError(f"attention_impl {self.attention_impl!r} is not one of {_ATTENTION_IMPLS}")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def embed_dim(self) -> int:
    """Width of `inputs_embeds` (the backbone interface; word_embed_proj_dim for OPT)."""
    return self.word_embed_proj_dim

  @property
  def has_final_layer_norm(self) -> bool:
    return self.do_layer_norm_before and not self.remove_final_layer_norm

  @property
  def has_projections(self) -> bool:
    return self.word_embed_proj_dim != self.hidden_size

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any], **overrides) -> OPTConfig:
    """From a Hugging Face `config.json` dict; `overrides` set any field (e.g. dtype)."""
    if d.get("model_type", "opt") != "opt":
      raise UserError(f"config.json has model_type {d.get('model_type')!r}; expected 'opt'")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k in names}
    if "_remove_final_layer_norm" in d:
      kwargs["remove_final_layer_norm"] = d["_remove_final_layer_norm"]
    for key in ("dtype", "param_dtype", "remat", "lora_rank", "lora_alpha", "attention_impl"):
      kwargs.pop(key, None)  # how to run is ours, not the checkpoint's
    unknown = set(overrides) - names
    if unknown:
      raise UserError(f"unknown OPTConfig fields {sorted(unknown)}; fields are {sorted(names)}")
    kwargs.update(overrides)
    return cls(**kwargs)

  def to_hf_dict(self) -> dict[str, Any]:
    """The `config.json` dict that `transformers.OPTForCausalLM.from_pretrained` reads."""
    hf_keys = ("vocab_size", "hidden_size", "num_hidden_layers", "ffn_dim",
               "num_attention_heads", "max_position_embeddings", "word_embed_proj_dim",
               "do_layer_norm_before", "enable_bias", "layer_norm_elementwise_affine",
               "activation_function", "dropout", "attention_dropout", "init_std",
               "pad_token_id", "bos_token_id", "eos_token_id")
    d = {k: getattr(self, k) for k in hf_keys}
    d.update(_remove_final_layer_norm=self.remove_final_layer_norm, model_type="opt",
             architectures=["OPTForCausalLM"], tie_word_embeddings=True,
             dtype=self.param_dtype, layerdrop=0.0, use_cache=True)
    return d


def init_cache(config: OPTConfig, batch_size: int, max_len: int) -> dict[str, Any]:
  """An empty KV cache of `max_len` slots per row, in the compute dtype."""
  shape = (batch_size, max_len, config.num_attention_heads, config.head_dim)
  zeros = lambda: jnp.zeros(shape, config.dtype)
  layers = tuple({"k": zeros(), "v": zeros()} for _ in range(config.num_hidden_layers))
  return {"index": jnp.zeros((), jnp.int32), "layers": layers}


def _dense(config: OPTConfig, features: int, name: str, *, use_bias=None, lora=False):
  return LoRADense(
      features, use_bias=config.enable_bias if use_bias is None else use_bias,
      rank=config.lora_rank if lora else 0, alpha=config.lora_alpha, dtype=config.dtype,
      param_dtype=config.param_dtype, kernel_init=nn.initializers.normal(config.init_std),
      name=name,
  )


def _layer_norm(config: OPTConfig, name: str) -> nn.LayerNorm:
  affine = config.layer_norm_elementwise_affine
  return nn.LayerNorm(epsilon=LN_EPS, use_bias=affine, use_scale=affine, dtype=config.dtype,
                      param_dtype=config.param_dtype, name=name)


class OPTAttention(nn.Module):
  """Multi-head self-attention with an optional fixed-size KV cache."""

  config: OPTConfig

  @nn.compact
  def __call__(self, h, allowed, layer_cache, index, deterministic: bool):
    # h [B, T, D]; allowed [B, 1, T, S] bool; layer_cache None or {"k","v"} [B, S, H, Dh].
    cfg = self.config
    b, t, _ = h.shape
    heads = (b, t, cfg.num_attention_heads, cfg.head_dim)
    q = _dense(cfg, cfg.hidden_size, "q_proj", lora=True)(h) * (cfg.head_dim**-0.5)
    k = _dense(cfg, cfg.hidden_size, "k_proj")(h)
    v = _dense(cfg, cfg.hidden_size, "v_proj", lora=True)(h)
    q, k, v = q.reshape(heads), k.reshape(heads), v.reshape(heads)  # [B, T, H, Dh]
    new_cache = None
    if layer_cache is not None:
      k = jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(cfg.dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(cfg.dtype), (0, index, 0, 0))
      new_cache = {"k": k, "v": v}  # [B, S, H, Dh]
    if cfg.attention_impl == "cudnn" and (deterministic or cfg.attention_dropout == 0.0):
      out = jax.nn.dot_product_attention(q, k, v, mask=allowed, scale=1.0,
                                         implementation="cudnn")
    else:
      drop = nn.Dropout(cfg.attention_dropout)
      out = attend(q, k, v, allowed, scale=1.0, dtype=cfg.dtype,
                   dropout=lambda p: drop(p, deterministic=deterministic))  # [B, T, H·Dh]
    out = out.reshape(b, t, cfg.hidden_size)
    return _dense(cfg, cfg.hidden_size, "out_proj")(out), new_cache


class OPTDecoderLayer(nn.Module):
  """Attention + ReLU feed-forward, LayerNorm before (pre-LN) or after (350m) each block."""

  config: OPTConfig

  @nn.compact
  def __call__(self, h, allowed, layer_cache, index, deterministic: bool):  # h [B, T, D]
    cfg = self.config
    pre = cfg.do_layer_norm_before
    ln_attn = _layer_norm(cfg, "self_attn_layer_norm")
    ln_ffn = _layer_norm(cfg, "final_layer_norm")
    residual = h
    x = ln_attn(h) if pre else h
    x, new_cache = OPTAttention(cfg, name="self_attn")(x, allowed, layer_cache, index,
                                                       deterministic)
    x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
    h = residual + x
    if not pre:
      h = ln_attn(h)
    residual = h
    x = ln_ffn(h) if pre else h
    x = _ACTIVATIONS[cfg.activation_function](_dense(cfg, cfg.ffn_dim, "fc1")(x))  # [B, T, F]
    x = _dense(cfg, cfg.hidden_size, "fc2")(x)
    x = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
    h = residual + x
    if not pre:
      h = ln_ffn(h)
    return h, new_cache


class OPTDecoder(nn.Module):
  """Embeddings, the decoder layers and the optional final LayerNorm / projections."""

  config: OPTConfig

  def setup(self):
    cfg = self.config
    init = nn.initializers.normal(cfg.init_std)
    self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.word_embed_proj_dim, embedding_init=init,
                                 dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    self.embed_positions = nn.Embed(cfg.max_position_embeddings + POSITION_OFFSET,
                                    cfg.hidden_size, embedding_init=init, dtype=cfg.dtype,
                                    param_dtype=cfg.param_dtype)
    if cfg.has_projections:
      self.project_in = _dense(cfg, cfg.hidden_size, "project_in", use_bias=False)
      self.project_out = _dense(cfg, cfg.word_embed_proj_dim, "project_out", use_bias=False)
    if cfg.has_final_layer_norm:
      self.final_layer_norm = _layer_norm(cfg, "final_layer_norm")
    layer_cls = nn.remat(OPTDecoderLayer, static_argnums=(5,)) if cfg.remat else OPTDecoderLayer
    self.layers = [layer_cls(cfg) for _ in range(cfg.num_hidden_layers)]

  def embed(self, input_ids: jax.Array) -> jax.Array:  # [B, T] -> [B, T, Dw]
    return self.embed_tokens(input_ids)

  def logits(self, h: jax.Array) -> jax.Array:  # [B, T, Dw] -> [B, T, V] float32
    return self.embed_tokens.attend(h).astype(jnp.float32)

  def __call__(self, inputs_embeds, allowed, positions, cache, deterministic: bool):
    # inputs_embeds [B, T, Dw]; positions [B, T] (HF ids, −1 = padding).
    cfg = self.config
    h = inputs_embeds.astype(cfg.dtype)
    if cfg.has_projections:
      h = self.project_in(h)  # [B, T, D]
    h = h + self.embed_positions(positions + POSITION_OFFSET)
    index = None if cache is None else cache["index"]
    new_layers = []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else cache["layers"][i]
      h, new_layer_cache = layer(h, allowed, layer_cache, index, deterministic)
      new_layers.append(new_layer_cache)
    if cfg.has_final_layer_norm:
      h = self.final_layer_norm(h)
    if cfg.has_projections:
      h = self.project_out(h)  # [B, T, Dw]
    new_cache = None
    if cache is not None:
      new_cache = {"index": index + inputs_embeds.shape[1], "layers": tuple(new_layers)}
    return h, new_cache


class OPTForCausalLM(nn.Module):
  """OPT decoder + tied lm_head. Returns (logits [B, T, V] float32, new cache or None)."""

  config: OPTConfig

  def setup(self):
    self.decoder = OPTDecoder(self.config)

  def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
    """Token embeddings [B, T, word_embed_proj_dim]: the width `inputs_embeds` takes."""
    return self.decoder.embed(input_ids)

  def __call__(self, input_ids=None, *, inputs_embeds=None, attention_mask, position_ids=None,
               cache=None, deterministic: bool = True, logits_to_keep: int = 0):
    """Logits for T new tokens given as ids [B, T] or embeddings [B, T, Dw].

    Without a cache, `attention_mask` is [B, T] (1 = real token, left padding allowed).
    With a cache of S slots it is [B, S] over all slots (1 = a real token is or will be
    there) and the tokens are written at slots cache["index"] ... + T − 1; or [B, T, S],
    each new token's keys given explicitly, with `position_ids` (causal_lm/attention.py).
    `logits_to_keep` > 0 returns only the last that many positions' logits (as in HF):
    a loss on trailing answer tokens, or a prefill, skips the rest of the lm_head.
    """
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("give exactly one of input_ids and inputs_embeds")
    if inputs_embeds is None:
      inputs_embeds = self.decoder.embed(input_ids)
    b, t = inputs_embeds.shape[:2]
    if attention_mask is None:
      attention_mask = jnp.ones((b, t) if cache is None else (b, cache["layers"][0]["k"].shape[1]),
                                jnp.int32)
    allowed, position_ids = causal_inputs(attention_mask,
                                          None if cache is None else cache["index"], t,
                                          position_ids)  # [B, 1, T, S], [B, T]
    h, new_cache = self.decoder(inputs_embeds, allowed, position_ids, cache, deterministic)
    if logits_to_keep:
      h = h[:, -logits_to_keep:]
    return self.decoder.logits(h), new_cache


def count_params(params: Any) -> int:
  """Number of scalars in a params (or ShapeDtypeStruct) pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
