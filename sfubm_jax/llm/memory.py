"""Device-memory arithmetic of Stage 2 likelihood ranking: how many candidates per chunk.

`stage2.make_rank_fn` runs each user's prompt once and then scores the C candidate
answers on copies of the prompt's KV cache. Each candidate scored at the same time holds,
per user of the batch, one copy of that cache (every layer's K and V over P + A slots, in
the compute dtype), its answer logits (A × V float32: the model's output, the
log-softmax's shifted exponent and its result, so three such arrays) and, while one layer
runs, that layer's attention scores and probabilities (float32, heads × A × (P + A) each).
`rank_chunk_size` picks the most candidates whose working set fits the budget
`config.llm.eval_memory_gb`; the weights and the prompt pass are outside it
(benchmarks/stage2_memory.py measures the whole step at 7B shapes).
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


def rank_bytes_per_candidate(llm_config, *, batch_size: int, prompt_len: int,
                             answer_len: int) -> int:
  """Bytes one more candidate costs when `batch_size` users are ranked at once (see above)."""
  slots = prompt_len + answer_len
  cache = cache_bytes(llm_config, batch_size, slots)
  logits = LOGIT_COPIES * batch_size * answer_len * llm_config.vocab_size * 4
  scores = 2 * batch_size * llm_config.num_attention_heads * answer_len * slots * 4
  return cache + logits + scores


def rank_chunk_size(llm_config, *, batch_size: int, prompt_len: int, answer_len: int,
                    num_candidates: int, memory_gb: float) -> int:
  """The most candidates (≤ num_candidates) whose ranking working set fits `memory_gb`.

  Chunks are balanced: when at most k fit, ceil(C / k) chunks of ceil(C / ceil(C / k))
  candidates each (C = 20, k = 15: 2 chunks of 10, not 15 + 5 padded to 30). Raises
  UserError when not even one candidate fits, naming the field and what would fit.
  `batch_size` is the users per device (the eval batch over the batch-parallel devices).
  """
  per = rank_bytes_per_candidate(llm_config, batch_size=batch_size, prompt_len=prompt_len,
                                 answer_len=answer_len)
  fit = int(memory_gb * GB // per)
  if fit < 1:
    one_user = rank_bytes_per_candidate(llm_config, batch_size=1, prompt_len=prompt_len,
                                        answer_len=answer_len)
    users = int(memory_gb * GB // one_user)
    hint = (f"or lower config.llm.eval_batch_size so that at most {users} users fall on each "
            "device" if users else "(not even one user fits)")
    raise UserError(
        f"likelihood ranking of {batch_size} users per device ({prompt_len} prompt + "
        f"{answer_len} answer tokens) needs {per / GB:.2f} GB per candidate (a KV-cache copy "
        f"and the answer logits) > config.llm.eval_memory_gb={memory_gb:g}; raise "
        f"config.llm.eval_memory_gb to at least {per / GB:.2f} {hint}")
  fit = min(fit, num_candidates)
  chunks = -(-num_candidates // fit)
  return -(-num_candidates // chunks)
