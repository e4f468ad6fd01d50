"""Chunk sizing of likelihood ranking (llm/memory.py): hand-counted bytes, the budget rule,
and XLA's own buffer assignment for one more candidate per chunk."""

import jax
import jax.numpy as jnp
import pytest

from sfubm_jax.errors import UserError
from sfubm_jax.llm import memory, stage2
from sfubm_jax.models.causal_lm import backbone
from sfubm_jax.models.causal_lm.llama import model as llama
from sfubm_jax.models.causal_lm.opt import model as opt
from sfubm_jax.models.projector import SoftPrompts

OPT = opt.OPTConfig(vocab_size=4096, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
                    num_attention_heads=4, max_position_embeddings=256, dropout=0.0)
LLAMA = llama.LlamaConfig(vocab_size=4096, hidden_size=64, num_hidden_layers=2,
                          intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=256, dtype="bfloat16")


def test_rank_bytes_by_hand():
  # OPT float32: 2 layers x (K, V) x 4 heads x 16 dims x 4 bytes per row and slot; a chunk
  # of 3 candidates packs at most 3 x 8 answer tokens after the 40 prompt slots.
  b, p, a, k = 3, 40, 8, 3
  length, slots = k * a, p + k * a
  cache = b * slots * 2 * 2 * 4 * 16 * 4
  assert memory.cache_bytes(OPT, b, slots) == cache
  logits = 3 * b * length * 4096 * 4
  scores = 2 * b * 4 * length * slots * 4
  mask = b * length * slots
  got = memory.rank_bytes(OPT, batch_size=b, prompt_len=p, answer_len=a, candidates=k)
  assert got == cache + logits + scores + mask
  # Llama bfloat16: the cache holds the 2 K/V heads only, 2 bytes each.
  assert memory.cache_bytes(LLAMA, b, p + a) == b * (p + a) * 2 * 2 * 2 * 16 * 2


def test_chunk_size_is_the_most_that_fits_balanced():
  kw = dict(batch_size=2, prompt_len=40, answer_len=8, num_candidates=20)
  need = lambda k, b=2: memory.rank_bytes(OPT, batch_size=b, prompt_len=40, answer_len=8,
                                          candidates=k)
  size = lambda k: memory.rank_chunk_size(OPT, **kw, memory_gb=(need(k) + 1) / 1e9)
  assert [size(k) for k in (1, 2, 5, 7, 15, 19, 20)] == [1, 2, 5, 7, 10, 10, 20]
  assert memory.rank_chunk_size(OPT, **kw, memory_gb=need(20) * 5 / 1e9) == 20
  with pytest.raises(UserError, match=r"config\.llm\.eval_memory_gb=.*eval_batch_size so that "
                     r"at most 1 users"):
    memory.rank_chunk_size(OPT, **kw, memory_gb=(need(1) - 1) / 1e9)
  with pytest.raises(UserError, match="not even one user fits"):
    memory.rank_chunk_size(OPT, **kw, memory_gb=1e-9)


def _compiled_temp_bytes(c_chunk, b, p, a, c):
  model = stage2.Stage2Model(backbone.build(OPT), SoftPrompts(out_dim=64, hidden=8))
  abstract = jax.eval_shape(lambda: backbone.init_random(OPT, jax.random.key(0)))
  _, frozen_llm = stage2.split_llm_params(abstract, "frozen")
  prompts = jax.eval_shape(lambda: model.init_prompts(jax.random.key(1), 5, 7))
  sd, i32, f32 = jax.ShapeDtypeStruct, jnp.int32, jnp.float32
  batch = {"input_ids": sd((b, p), i32), "attention_mask": sd((b, p), i32),
           "item_pos": sd((b, 4), i32), "item_ids": sd((b, 4), i32), "user_pos": sd((b,), i32),
           "user_vecs": sd((b, 5), f32)}
  rank = stage2.make_rank_fn(model, "sum", c_chunk)
  compiled = jax.jit(rank).lower({"prompts": prompts, "llm": {}},
                                 {"llm": frozen_llm, "items": sd((10, 7), f32)}, batch,
                                 sd((b, c, a), i32), sd((b, c, a), f32)).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_estimate_bounds_what_xla_allocates_per_candidate():
  # XLA's temporaries grow by `extra` from a chunk of 6 candidates to one of 12 (where the
  # chunk, not the prompt pass, sets the peak). The estimate grows by more, within a small
  # factor: it counts every packed row at k·A tokens and three logit arrays, where XLA
  # fuses the log-softmax.
  b, p, a, c = 4, 96, 8, 12
  extra = _compiled_temp_bytes(12, b, p, a, c) - _compiled_temp_bytes(6, b, p, a, c)
  need = lambda k: memory.rank_bytes(OPT, batch_size=b, prompt_len=p, answer_len=a,
                                     candidates=k)
  est = need(12) - need(6)
  assert 0 < extra <= est <= 6 * extra, (extra, est)
