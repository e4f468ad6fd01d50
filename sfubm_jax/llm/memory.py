"""Device-memory arithmetic of Stage 2 likelihood ranking: how many candidates per chunk.

`stage2.rank_from_cache` runs each user's prompt once and then scores a chunk of k
candidate answers packed into one row of L = k·A tokens (A: the longest answer) on top of
the prompt's KV cache. A chunk holds, per user of the batch, one copy of that cache
(every layer's K and V over P + L slots, in the compute dtype; the packed row is written
into it), the row's logits (L × V float32: the model's output, the log-softmax's shifted
exponent and its result, so three such arrays), its [L, P + L] attention mask and, while
one layer runs, that layer's attention scores and probabilities (float32,
heads × L × (P + L) each). `rank_chunk_size` picks the most candidates whose working set
fits the budget `config.llm.eval_memory_gb`; the weights and the prompt pass are outside
it (benchmarks/stage2_memory.py measures the whole program at 7B shapes). A packed row
is at most k·A tokens (titles are shorter on average), so the estimate is an upper bound.
"""

from __future__ import annotations

import jax
import numpy as np

from sfubm_jax.errors import UserError

GB = 1e9
LOGIT_COPIES = 3  # float32 [A, V] arrays live at once: logits, shifted exp, log-softmax


def cache_bytes(llm_config, batch_size: int, num_slots: int) -> int:
  """Bytes of an empty KV cache (`backbone.init_cache`) of `num_slots` per row; no allocation."""
  from sfubm_jax.models.causal_lm.backbone import init_cache

  shapes = jax.eval_shape(lambda: init_cache(llm_config, batch_size, num_slots))
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree.leaves(shapes) if x.ndim)


def rank_bytes(llm_config, *, batch_size: int, prompt_len: int, answer_len: int,
               candidates: int) -> int:
  """Bytes of ranking a chunk of `candidates` for `batch_size` users at once (see above)."""
  length = candidates * answer_len  # the packed row, at most
  slots = prompt_len + length
  cache = cache_bytes(llm_config, batch_size, slots)
  logits = LOGIT_COPIES * batch_size * length * llm_config.vocab_size * 4
  scores = 2 * batch_size * llm_config.num_attention_heads * length * slots * 4
  mask = batch_size * length * slots  # bool
  return cache + logits + scores + mask


def rank_chunk_size(llm_config, *, batch_size: int, prompt_len: int, answer_len: int,
                    num_candidates: int, memory_gb: float) -> int:
  """The most candidates (≤ num_candidates) whose ranking working set fits `memory_gb`.

  Chunks are balanced: when at most k fit, ceil(C / k) chunks of ceil(C / ceil(C / k))
  candidates each (C = 20, k = 15: 2 chunks of 10, not 15 + 5 padded to 30). Raises
  UserError when not even one candidate fits, naming the field and what would fit.
  `batch_size` is the users per device (the eval batch over the batch-parallel devices).
  """
  need = lambda b, k: rank_bytes(llm_config, batch_size=b, prompt_len=prompt_len,
                                 answer_len=answer_len, candidates=k)
  budget = memory_gb * GB
  fit = max((k for k in range(1, num_candidates + 1) if need(batch_size, k) <= budget),
            default=0)
  if fit < 1:
    per = need(batch_size, 1)
    users = max((u for u in range(1, batch_size + 1) if need(u, 1) <= budget), default=0)
    hint = (f"or lower config.llm.eval_batch_size so that at most {users} users fall on each "
            "device" if users else "(not even one user fits)")
    raise UserError(
        f"likelihood ranking of {batch_size} users per device ({prompt_len} prompt + "
        f"{answer_len} answer tokens) needs {per / GB:.2f} GB for one candidate (a KV-cache "
        f"copy and the answer logits) > config.llm.eval_memory_gb={memory_gb:g}; raise "
        f"config.llm.eval_memory_gb to at least {per / GB:.2f} {hint}")
  chunks = -(-num_candidates // fit)
  return -(-num_candidates // chunks)
