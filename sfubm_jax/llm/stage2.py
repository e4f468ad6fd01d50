"""Stage 2 numerics: soft-prompt splicing, answer-only loss, train step, candidate scores.

Pure functions over explicit pytrees (SPEC §7, Eq. 15–17). The LLM's parameters are
split by path into a trainable part and a frozen part (`split_llm_params`): frozen by
default (nothing of the LLM trains, so the optimizer holds state only for P_u and P_i),
"lora" (the parameters whose path names "lora"), or "full" (the small random OPT of the
CPU configs, trained from scratch). Trainable state is
`{"trainable": {"prompts": P_u/P_i params, "llm": {path: array}}, "opt": optax state}`;
the frozen LLM part and the item-embedding table travel separately and are never
differentiated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from sfubm_jax.models.projector import SoftPrompts

TRAIN_MODES = ("frozen", "lora", "full")
RANK_REDUCE = ("sum", "mean")  # answer score: log-likelihood, or its per-token mean
SEP = "/"


def split_llm_params(llm_params: Any, mode: str) -> tuple[dict, dict]:
  """(trainable, frozen): flat {"a/b/c": array} dicts over the LLM variables."""
  if mode not in TRAIN_MODES:
    raise ValueError(f"train mode {mode!r} not in {TRAIN_MODES}")
  flat = traverse_util.flatten_dict(llm_params, sep=SEP)
  if mode == "full":
    return flat, {}
  if mode == "lora":
    train = {k: v for k, v in flat.items() if "lora" in k}
    return train, {k: v for k, v in flat.items() if "lora" not in k}
  return {}, flat


def merge_llm_params(trainable: dict, frozen: dict) -> Any:
  """The nested LLM variables again (inverse of `split_llm_params`)."""
  return traverse_util.unflatten_dict({**frozen, **trainable}, sep=SEP)


def splice(
    token_embeds: jax.Array,  # [B, T, D]
    item_pos: jax.Array,  # [B, S] positions; T = no slot (dropped)
    item_embeds: jax.Array,  # [B, S, D]
    user_pos: jax.Array,  # [B]; T = none
    user_embeds: jax.Array,  # [B, D]
) -> jax.Array:
  """Token embeddings with the slot positions overwritten by the soft prompts."""
  rows = jnp.arange(token_embeds.shape[0])
  out = token_embeds.at[rows[:, None], item_pos].set(
      item_embeds.astype(token_embeds.dtype), mode="drop"
  )
  return out.at[rows, user_pos].set(user_embeds.astype(token_embeds.dtype), mode="drop")


@dataclasses.dataclass(frozen=True)
class Stage2Model:
  """The frozen-or-trained LLM backbone plus (optionally) the soft-prompt projectors."""

  llm: nn.Module  # a backbone (causal_lm/backbone.py): OPT or Llama family
  prompts: SoftPrompts | None  # None: no soft prompts (llm_only)

  def init_prompts(self, key: jax.Array, user_dim: int, item_dim: int) -> Any:
    if self.prompts is None:
      return {}
    return self.prompts.init(key, jnp.zeros((1, user_dim)), jnp.zeros((1, 1, item_dim)))

  def embed(self, trainable: Any, frozen: Any, batch: dict) -> jax.Array:
    """inputs_embeds [B, T, D]: token embeddings, soft prompts at the slots."""
    llm_params = merge_llm_params(trainable["llm"], frozen["llm"])
    tokens = self.llm.apply(llm_params, batch["input_ids"], method="embed_tokens")  # [B, T, D]
    if self.prompts is None:
      return tokens
    item_vecs = jnp.take(frozen["items"], batch["item_ids"], axis=0)  # [B, S, d]
    p_u, p_i = self.prompts.apply(trainable["prompts"], batch["user_vecs"], item_vecs)
    return splice(tokens, batch["item_pos"], p_i, batch["user_pos"], p_u)

  def logits(self, trainable: Any, frozen: Any, batch: dict, keep: int = 0) -> jax.Array:
    """[B, T, V] float32 logits of the spliced sequences ([B, keep, V]: the last `keep`)."""
    embeds = self.embed(trainable, frozen, batch)
    llm_params = merge_llm_params(trainable["llm"], frozen["llm"])
    logits, _ = self.llm.apply(
        llm_params, inputs_embeds=embeds, attention_mask=batch["attention_mask"],
        deterministic=True, logits_to_keep=keep,
    )
    return logits.astype(jnp.float32)


def token_logprobs(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """log p(labels[t] | ..t) [B, T] from logits [B, T, V]."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


def answer_loss(logits, labels, loss_mask) -> tuple[jax.Array, dict]:
  """Eq. 17: mean next-token cross-entropy over answer tokens only."""
  nll = -token_logprobs(logits, labels) * loss_mask  # [B, T]
  tokens = jnp.sum(loss_mask)
  return jnp.sum(nll) / jnp.maximum(tokens, 1.0), {"tokens": tokens}


def sequence_scores(logits, labels, loss_mask, reduce: str = "sum") -> jax.Array:
  """Score [B] of each answer: sum (log-likelihood) or mean of its token log-probs."""
  lp = jnp.sum(token_logprobs(logits, labels) * loss_mask, axis=-1)
  if reduce == "mean":
    return lp / jnp.maximum(jnp.sum(loss_mask, axis=-1), 1.0)
  if reduce != "sum":
    raise ValueError(f"rank reduce {reduce!r} not in {RANK_REDUCE}")
  return lp


def answer_span(loss_mask) -> int:
  """Trailing positions that hold every answer-token prediction of left-padded `loss_mask`.

  `make_train_step(..., keep=answer_span(mask))` then computes the vocabulary projection
  only there: the same loss and gradients, and the lm_head (about half the FLOPs of a
  small OPT at these lengths) on a few positions instead of all T.
  """
  mask = np.asarray(loss_mask)
  cols = np.flatnonzero(mask.any(axis=0))
  return int(mask.shape[1] - cols[0]) if cols.size else 1


def make_train_step(model: Stage2Model, tx: optax.GradientTransformation,
                    keep: int = 0) -> Callable:
  """step(state, frozen, batch) -> (state, {"loss", "tokens"}); jit it with donate=0.

  `keep` > 0 computes logits for the last `keep` positions only; every position with
  loss_mask 1 must lie among them (see `answer_span`).
  """

  def loss_fn(trainable, frozen, batch):
    logits = model.logits(trainable, frozen, batch, keep)
    tail = (lambda x: x[:, -keep:]) if keep else (lambda x: x)
    return answer_loss(logits, tail(batch["labels"]), tail(batch["loss_mask"]))

  def step(state, frozen, batch):
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["trainable"], frozen, batch
    )
    updates, opt = tx.update(grads, state["opt"], state["trainable"])
    trainable = optax.apply_updates(state["trainable"], updates)
    return {"trainable": trainable, "opt": opt}, {"loss": loss, **aux}

  return step


def make_score_fn(model: Stage2Model, reduce: str) -> Callable:
  """fn(trainable, frozen, batch) -> [B] answer scores (see `sequence_scores`)."""

  def score(trainable, frozen, batch):
    logits = model.logits(trainable, frozen, batch)
    return sequence_scores(logits, batch["labels"], batch["loss_mask"], reduce)

  return score


def packed_length(answer_mask: np.ndarray, c_chunk: int = 0) -> int:
  """Tokens of the longest packed row `rank_from_cache` writes for these answers.

  answer_mask [U, C, A] (host arrays, all users to be ranked): the most answer tokens of
  one user's chunk of `c_chunk` candidates (0 = all C), over users and chunks; at least 1.
  """
  u, c, a = answer_mask.shape
  k = _chunk_size(c, c_chunk)
  n = -(-c // k)
  lens = np.pad(np.asarray(answer_mask).sum(-1), ((0, 0), (0, n * k - c)))  # [U, n·k]
  return max(1, int(lens.reshape(u, n, k).sum(-1).max()))


def rank_from_cache(model: Stage2Model, llm_params, first_logits, cache, prompt_mask,
                    answers, answer_mask, *, c_chunk: int = 0, pack_len: int = 0,
                    reduce: str = "sum"):
  """[B, C] scores of the candidate answers [B, C, A] after a prompt pass.

  `first_logits` [B, V]: the prompt's last-position logits; `cache`: its KV cache, written
  up to P (`decoding.prefill`), with ≥ P + L slots; `prompt_mask` [B, S]: the prompt's
  mask over all S cache slots. log p(a | prompt) = log p(a_0 | prompt) +
  Σ_{j≥1} log p(a_j | prompt, a_<j).

  The candidates share the prompt's cache instead of each holding a copy: a user's answers
  are packed back to back into one row of L tokens, written once after the prompt, and
  each token attends to the prompt and to the earlier tokens of its own answer (a
  [B, L, S] mask; positions continue the prompt's, as if it followed the prompt alone).
  Padding costs nothing but the row's tail. `c_chunk` > 0 packs the candidates c_chunk at
  a time (a `lax.map` over ceil(C / c_chunk) chunks, C padded up with empty answers), each
  chunk writing its own row into one copy of the cache; 0 = all C in one row.
  L = `pack_len`: at least `packed_length(answer_mask, c_chunk)` (tokens past L are lost);
  0 = k·A, which always holds.
  """
  if reduce not in RANK_REDUCE:
    raise ValueError(f"rank reduce {reduce!r} not in {RANK_REDUCE}")
  b, c, a = answers.shape
  p = cache["index"]  # the prompt length: answers are written from this slot on
  s = prompt_mask.shape[1]
  k = _chunk_size(c, c_chunk)  # candidates per chunk
  n = -(-c // k)  # chunks
  length = _row_length(answers, c_chunk, pack_len)  # tokens of a packed row
  first = jax.nn.log_softmax(first_logits.astype(jnp.float32), axis=-1)  # [B, V]
  prompt_pos = jnp.sum(prompt_mask, axis=1).astype(jnp.int32)  # [B]: the next position
  rows = jnp.arange(b)[:, None, None]

  def score_chunk(chunk):
    ans, ans_mask = chunk  # [B, k, A] each
    real = ans_mask > 0
    lens = jnp.sum(real, axis=-1).astype(jnp.int32)  # [B, k]
    start = jnp.cumsum(lens, axis=-1) - lens  # [B, k]: each answer's first packed slot
    offset = jnp.broadcast_to(jnp.arange(a, dtype=jnp.int32), (b, k, a))
    dest = jnp.where(real, start[..., None] + offset, length)  # [B, k, A]; L = dropped
    seg = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[None, :, None], (b, k, a))
    put = lambda fill, x: jnp.full((b, length), fill, jnp.int32).at[rows, dest].set(
        x, mode="drop")
    tokens, seg_row, off_row = put(0, ans), put(-1, seg), put(0, offset)  # [B, L] each
    # Keys of packed token i: the prompt's, and the packed tokens j ≤ i of its answer.
    own = ((seg_row[:, :, None] == seg_row[:, None, :]) & (seg_row[:, :, None] >= 0)
           & (jnp.arange(length)[None, :] <= jnp.arange(length)[:, None])[None])  # [B, L, L]
    mask = jax.lax.dynamic_update_slice(jnp.zeros((b, length, s), bool), own, (0, 0, p))
    mask = mask | prompt_mask.astype(bool)[:, None, :]  # [B, L, S]: prompt, then own answer
    logits, _ = model.llm.apply(
        llm_params, tokens, attention_mask=mask, position_ids=prompt_pos[:, None] + off_row,
        cache=cache, deterministic=True,
    )  # [B, L, V]
    # Packed token i + 1 continues token i's answer unless it opens one (offset 0).
    nxt = jnp.concatenate([tokens[:, 1:], jnp.zeros((b, 1), jnp.int32)], axis=1)
    lp = token_logprobs(logits, nxt)  # [B, L]: log p(token i + 1 | ..., token i)
    lp_rest = jnp.take_along_axis(lp, jnp.clip(dest - 1, 0, length - 1).reshape(b, k * a),
                                  axis=1).reshape(b, k, a)
    lp0 = jnp.take_along_axis(first, ans[:, :, 0], axis=-1)  # [B, k]
    rest = jnp.where(real & (offset > 0), lp_rest, 0.0)
    return lp0 * ans_mask[:, :, 0] + jnp.sum(rest, axis=-1)  # [B, k]

  pad = ((0, 0), (0, n * k - c), (0, 0))
  chunks = tuple(jnp.pad(x, pad).reshape(b, n, k, a).swapaxes(0, 1)
                 for x in (answers, answer_mask))  # [n, B, k, A] each
  total = jax.lax.map(score_chunk, chunks).swapaxes(0, 1).reshape(b, n * k)[:, :c]  # [B, C]
  if reduce == "mean":
    return total / jnp.maximum(jnp.sum(answer_mask, axis=-1), 1.0)
  return total


def make_rank_fn(model: Stage2Model, reduce: str, c_chunk: int = 0,
                 pack_len: int = 0) -> Callable:
  """fn(trainable, frozen, batch, answers [B, C, A], answer_mask [B, C, A]) -> [B, C].

  Likelihood ranking with the KV cache: the prompt (left-padded to P) runs once per user
  and the candidates' answers, packed into one row, run on top of its cache
  (`rank_from_cache`; `pack_len` as there): equal to scoring the C full sequences
  (`make_score_fn` on `prompts.pack_candidates`) at a fraction of the cost.
  """
  from sfubm_jax.llm.decoding import prefill

  if reduce not in RANK_REDUCE:
    raise ValueError(f"rank reduce {reduce!r} not in {RANK_REDUCE}")

  def rank(trainable, frozen, batch, answers, answer_mask):
    p, length = batch["input_ids"].shape[1], _row_length(answers, c_chunk, pack_len)
    llm_params = merge_llm_params(trainable["llm"], frozen["llm"])
    embeds = model.embed(trainable, frozen, batch)  # [B, P, D]
    first, cache, mask = prefill(model.llm, llm_params, embeds, batch["attention_mask"],
                                 p + length)
    return rank_from_cache(model, llm_params, first, cache, mask, answers, answer_mask,
                           c_chunk=c_chunk, pack_len=length, reduce=reduce)

  return rank


def _chunk_size(c: int, c_chunk: int) -> int:
  """Candidates per ranking chunk: `c_chunk` of the C, or all C when it is 0."""
  return min(c_chunk, c) if c_chunk > 0 else c


def _row_length(answers, c_chunk: int, pack_len: int) -> int:
  """L of `rank_from_cache`: `pack_len`, or k·A when it is 0."""
  _, c, a = answers.shape
  return pack_len or _chunk_size(c, c_chunk) * a


def make_eval_fn(model: Stage2Model, reduce: str, c_chunk: int, *, max_new_tokens: int,
                 stop_ids: tuple[int, ...], pad_id: int, pack_len: int = 0) -> Callable:
  """fn(trainable, frozen, batch, answers, answer_mask) -> (tokens [B, N], scores [B, C]).

  One prompt pass serves both halves of Stage 2 evaluation: greedy decoding
  (`decoding.decode_from`, the same tokens as `decoding.make_greedy_generate`) and
  likelihood ranking (`rank_from_cache`, the same scores as `make_rank_fn`), both reading
  the prompt's KV cache (sized for the longer of the two); each writes its own copy.
  """
  from sfubm_jax.llm import decoding

  def evaluate(trainable, frozen, batch, answers, answer_mask):
    p, length = batch["input_ids"].shape[1], _row_length(answers, c_chunk, pack_len)
    llm_params = merge_llm_params(trainable["llm"], frozen["llm"])
    embeds = model.embed(trainable, frozen, batch)  # [B, P, D]
    first, cache, mask = decoding.prefill(model.llm, llm_params, embeds,
                                          batch["attention_mask"],
                                          p + max(length, max_new_tokens))
    tokens = decoding.decode_from(model.llm, llm_params, first, cache, mask, jax.random.key(0),
                                  max_new_tokens=max_new_tokens, stop_ids=stop_ids,
                                  pad_id=pad_id, pick=decoding.greedy)
    scores = rank_from_cache(model, llm_params, first, cache, mask, answers, answer_mask,
                             c_chunk=c_chunk, pack_len=length, reduce=reduce)
    return tokens, scores

  return evaluate
