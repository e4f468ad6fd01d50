"""Batched generation with a KV cache: greedy (Stage 2 evaluation) and sampling.

The prompt arrives as input embeddings (soft prompts already spliced in) with a
left-padded attention mask. One prefill call fills the cache (`prefill`); a
`lax.while_loop` then feeds one token per step (`decode_from`) and stops early once every
row has produced a stop token. The whole loop is one jitted function, traced once per
input shape, never per step. Stage 2 evaluation shares one prefill between decoding and
likelihood ranking (`stage2.make_eval_fn`).

Works for every backbone (causal_lm/backbone.py: OPT, Llama family).

Output: tokens [B, max_new_tokens] int32 where the stop token and everything after it is
the pad id, so a row decodes to its answer by dropping pads. Greedy output is
token-identical to `transformers` `generate(do_sample=False)` on the same weights.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sfubm_jax.models.causal_lm.backbone import init_cache

Picker = Callable[[jax.Array, jax.Array], jax.Array]  # (logits [B, V], key) -> tokens [B]


def greedy(logits: jax.Array, key: jax.Array) -> jax.Array:
  del key
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def _sampler(temperature: float, top_k: int) -> Picker:
  def pick(logits, key):  # [B, V] float32
    logits = logits / temperature
    if top_k > 0:
      kth = jax.lax.top_k(logits, top_k)[0][:, -1:]  # [B, 1]
      logits = jnp.where(logits < kth, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)

  return pick


def prefill(model: nn.Module, params, inputs_embeds, attention_mask, slots: int):
  """(last-position logits [B, V], cache, mask [B, slots]) of the prompt pass.

  inputs_embeds [B, T, Dw]; attention_mask [B, T] (left padded). The cache has `slots`
  ≥ T slots per row; `mask` is the prompt's mask over all of them (0 after T), which the
  decoding loop and likelihood ranking (`stage2.rank_from_cache`) extend.
  """
  b, t = attention_mask.shape
  cache = init_cache(model.config, b, slots)
  mask = jnp.concatenate(
      [attention_mask.astype(jnp.int32), jnp.zeros((b, slots - t), jnp.int32)], axis=1
  )  # [B, S] over all cache slots
  logits, cache = model.apply(params, inputs_embeds=inputs_embeds, attention_mask=mask,
                              cache=cache, logits_to_keep=1)  # [B, 1, V]
  return logits[:, -1], cache, mask


def decode_from(model: nn.Module, params, last_logits, cache, mask, key, *,
                max_new_tokens: int, stop_ids: tuple[int, ...], pad_id: int, pick: Picker):
  """Tokens [B, max_new_tokens] continuing a `prefill` (its cache has ≥ T + N − 1 slots)."""
  b = last_logits.shape[0]
  t = cache["index"]  # slots written so far: the prompt length
  stop = jnp.asarray(stop_ids, jnp.int32)
  key, sub = jax.random.split(key)
  last = pick(last_logits, sub)  # [B]
  done = jnp.isin(last, stop)
  tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(
      jnp.where(done, pad_id, last))

  def cond(state):
    i, _, done, *_ = state
    return (i < max_new_tokens) & ~jnp.all(done)

  def body(state):
    i, last, done, tokens, cache, mask, key = state
    mask = jax.lax.dynamic_update_slice(mask, jnp.ones((b, 1), jnp.int32), (0, t + i - 1))
    logits, cache = model.apply(params, last[:, None], attention_mask=mask, cache=cache)
    key, sub = jax.random.split(key)
    nxt = pick(logits[:, -1], sub)
    done = done | jnp.isin(nxt, stop)
    tokens = jax.lax.dynamic_update_slice(tokens, jnp.where(done, pad_id, nxt)[:, None], (0, i))
    return i + 1, nxt, done, tokens, cache, mask, key

  state = (jnp.int32(1), last, done, tokens, cache, mask, key)
  return jax.lax.while_loop(cond, body, state)[3]


def _generate(model: nn.Module, params, inputs_embeds, attention_mask, key, *,
              max_new_tokens: int, stop_ids: tuple[int, ...], pad_id: int, pick: Picker):
  t = attention_mask.shape[1]
  last, cache, mask = prefill(model, params, inputs_embeds, attention_mask, t + max_new_tokens)
  return decode_from(model, params, last, cache, mask, key, max_new_tokens=max_new_tokens,
                     stop_ids=stop_ids, pad_id=pad_id, pick=pick)


def make_greedy_generate(model: nn.Module, *, max_new_tokens: int,
                         eos_token_ids: Sequence[int], pad_token_id: int | None = None):
  """Jitted fn(params, inputs_embeds [B,T,Dw], attention_mask [B,T]) -> tokens [B, N] int32."""
  pad = model.config.pad_token_id if pad_token_id is None else pad_token_id
  run = functools.partial(_generate, model, max_new_tokens=max_new_tokens,
                          stop_ids=tuple(int(e) for e in eos_token_ids), pad_id=pad,
                          pick=greedy)
  return jax.jit(lambda params, embeds, mask: run(params, embeds, mask, jax.random.key(0)))


def make_sample_generate(model: nn.Module, *, max_new_tokens: int,
                         eos_token_ids: Sequence[int], temperature: float = 1.0,
                         top_k: int = 0, pad_token_id: int | None = None):
  """Jitted fn(params, inputs_embeds, attention_mask, key) -> tokens [B, N]: sampling."""
  pad = model.config.pad_token_id if pad_token_id is None else pad_token_id
  run = functools.partial(_generate, model, max_new_tokens=max_new_tokens,
                          stop_ids=tuple(int(e) for e in eos_token_ids), pad_id=pad,
                          pick=_sampler(temperature, top_k))
  return jax.jit(run)


@functools.lru_cache(maxsize=16)
def _cached_ids_generate(model: nn.Module, max_new_tokens: int, stop_ids: tuple[int, ...]):
  gen = make_greedy_generate(model, max_new_tokens=max_new_tokens, eos_token_ids=stop_ids)

  @jax.jit
  def run(params, input_ids, attention_mask):
    embeds = model.apply(params, input_ids, method="embed_tokens")  # [B, T, Dw]
    return gen(params, embeds, attention_mask)

  return run


def generate_from_ids(model: nn.Module, params, input_ids, attention_mask, *,
                      max_new_tokens: int, eos_token_ids: Sequence[int]) -> jax.Array:
  """Greedy generation from token ids [B, T] (left padded); tokens [B, max_new_tokens]."""
  run = _cached_ids_generate(model, max_new_tokens, tuple(int(e) for e in eos_token_ids))
  return run(params, jnp.asarray(input_ids, jnp.int32), jnp.asarray(attention_mask, jnp.int32))
