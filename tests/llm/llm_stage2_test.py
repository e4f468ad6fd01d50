"""Stage 2 numerics on tiny random LLMs of both backbone families (OPT, Llama): splicing,
answer-only loss, frozen LLM, ranking."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sfubm_jax import sharding
from sfubm_jax.llm import prompts, stage2
from sfubm_jax.models.causal_lm import backbone
from sfubm_jax.models.causal_lm.llama import model as llama
from sfubm_jax.models.causal_lm.opt import model as opt
from sfubm_jax.models.projector import SoftPrompts

V, D, DU, DI = 64, 16, 5, 7
SLOT, BOS, EOS, PAD = 1, 2, 2, 1


def _llm_config(family):
  ids = dict(pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
  if family == "opt":
    return opt.OPTConfig(vocab_size=V, hidden_size=D, num_hidden_layers=2, ffn_dim=32,
                         num_attention_heads=2, max_position_embeddings=128, dropout=0.0, **ids)
  return llama.LlamaConfig(vocab_size=V, hidden_size=D, num_hidden_layers=2,
                           intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=128, tie_word_embeddings=True, **ids)


@pytest.fixture(scope="module", params=backbone.FAMILIES)
def setup(request):
  cfg = _llm_config(request.param)
  llm = backbone.build(cfg)
  llm_params = llm.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                        attention_mask=jnp.ones((1, 4), jnp.int32))
  model = stage2.Stage2Model(llm, SoftPrompts(out_dim=D, hidden=8))
  prompt_params = model.init_prompts(jax.random.key(1), DU, DI)
  rng = np.random.default_rng(0)
  items = rng.normal(size=(10, DI)).astype(np.float32)
  title_tokens = [[]] + [list(rng.integers(3, V, size=rng.integers(1, 4))) for _ in range(9)]
  builder = prompts.PromptBuilder(
      lambda s: [3 + (ord(ch) % (V - 3)) for ch in s], template="h {history} u {user} c "
      "{candidates} :", noun="", title_tokens=title_tokens, bos_id=BOS, eos_id=EOS,
      slot_id=SLOT, soft_prompts=True)
  trainable, frozen = stage2.split_llm_params(llm_params, "frozen")
  return dict(cfg=cfg, model=model, builder=builder, items=items, rng=rng,
              trainable={"prompts": prompt_params, "llm": trainable},
              frozen={"llm": frozen, "items": jnp.asarray(items)})


def _batch(setup, hists, cands, answers=None, length=40, slots=8):
  b = setup["builder"]
  ps = [b.build(h, c) for h, c in zip(hists, cands)]
  out = prompts.pack(ps, answers, length=length, num_slots=slots, pad_id=PAD)
  out["user_vecs"] = setup["rng"].normal(size=(len(ps), DU)).astype(np.float32)
  return ps, out


def test_splice_puts_projector_outputs_at_slots_only(setup):
  m, tr, fr = setup["model"], setup["trainable"], setup["frozen"]
  ps, batch = _batch(setup, [[1, 2], [0, 3]], [[4, 5, 6], [7, 8, 9]])
  embeds = np.asarray(m.embed(tr, fr, batch))
  tokens = np.asarray(m.llm.apply(merge(tr, fr), batch["input_ids"], method="embed_tokens"))
  p_u, p_i = m.prompts.apply(tr["prompts"], batch["user_vecs"], setup["items"][batch["item_ids"]])
  for r, p in enumerate(ps):
    off = 40 - len(p.ids)
    slot_pos = {off + pos for pos, _ in p.item_slots} | {off + p.user_slot}
    for k, (pos, _) in enumerate(p.item_slots):
      np.testing.assert_allclose(embeds[r, off + pos], p_i[r, k], rtol=1e-6)
    np.testing.assert_allclose(embeds[r, off + p.user_slot], p_u[r], rtol=1e-6)
    others = [t for t in range(40) if t not in slot_pos]
    np.testing.assert_array_equal(embeds[r, others], tokens[r, others])


def _answer_arrays(builder, cands, length):
  """answers [U, C, A] right-padded with PAD and their mask: the eval stage's own arrays."""
  from sfubm_jax.llm import eval_stage

  return eval_stage.answer_arrays(types.SimpleNamespace(pad_id=PAD), builder,
                                  np.asarray(cands), length)


def merge(tr, fr):
  return stage2.merge_llm_params(tr["llm"], fr["llm"])


def test_loss_counts_answer_tokens_only(setup):
  m, tr, fr, b = setup["model"], setup["trainable"], setup["frozen"], setup["builder"]
  ans = [b.answer(4), b.answer(8)]
  ps, batch = _batch(setup, [[1, 2], [3]], [[4, 5], [8, 9]], answers=ans)
  logits = np.asarray(m.logits(tr, fr, batch), np.float64)
  loss, aux = stage2.answer_loss(jnp.asarray(logits), batch["labels"], batch["loss_mask"])
  # Hand reference: -log softmax at the position before each answer token.
  nll = []
  for r, p in enumerate(ps):
    seq = p.ids + ans[r]
    off = 40 - len(seq)
    for j, tok in enumerate(ans[r]):
      t = off + len(p.ids) - 1 + j
      row = logits[r, t]
      nll.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[tok])
  assert aux["tokens"] == sum(len(a) for a in ans)
  np.testing.assert_allclose(loss, np.mean(nll), rtol=1e-5)
  # Changing a prompt-token label leaves the loss unchanged; an answer label changes it.
  labels = batch["labels"].copy()
  t0 = int(np.argmax(batch["attention_mask"][0]))
  labels[0, t0] = (labels[0, t0] + 1) % V
  same, _ = stage2.answer_loss(jnp.asarray(logits), labels, batch["loss_mask"])
  np.testing.assert_allclose(same, loss, rtol=1e-7)


def test_frozen_llm_has_no_optimizer_state_and_does_not_change(setup):
  m, tr, fr, b = setup["model"], setup["trainable"], setup["frozen"], setup["builder"]
  assert tr["llm"] == {}
  tx = optax.adam(1e-2)
  state = {"trainable": tr, "opt": tx.init(tr)}
  n_train = sum(x.size for x in jax.tree.leaves(tr))
  n_opt = sum(x.size for x in jax.tree.leaves(state["opt"]) if x.ndim)
  assert n_opt == 2 * n_train  # Adam's mu and nu for the projectors only
  _, batch = _batch(setup, [[1, 2]], [[4, 5]], answers=[b.answer(4)])
  step = jax.jit(stage2.make_train_step(m, tx))
  frozen_before = jax.tree.map(np.asarray, fr)
  new, metrics = step(state, fr, batch)
  new, metrics2 = step(new, fr, batch)
  assert float(metrics2["loss"]) < float(metrics["loss"])
  jax.tree.map(np.testing.assert_array_equal, frozen_before, jax.tree.map(np.asarray, fr))
  moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                       new["trainable"]["prompts"], tr["prompts"])
  assert all(v > 0 for v in jax.tree.leaves(moved))


def test_answer_span_step_equals_full_logits_step(setup):
  m, tr, fr, b = setup["model"], setup["trainable"], setup["frozen"], setup["builder"]
  ans = [b.answer(4), b.answer(8), b.answer(9)]
  _, batch = _batch(setup, [[1, 2], [3], [5, 6, 7]], [[4, 5], [8, 9], [9, 1]], answers=ans)
  keep = stage2.answer_span(batch["loss_mask"])
  # Left padding puts every answer at the end: the span is the longest answer + 1.
  assert keep == max(len(a) for a in ans) + 1 < batch["loss_mask"].shape[1]
  assert stage2.answer_span(np.zeros((2, 9))) == 1
  tx = optax.adam(1e-2)
  state = {"trainable": tr, "opt": tx.init(tr)}
  full_state, full = jax.jit(stage2.make_train_step(m, tx))(state, fr, batch)
  part_state, part = jax.jit(stage2.make_train_step(m, tx, keep))(state, fr, batch)
  np.testing.assert_allclose(part["loss"], full["loss"], rtol=1e-6)
  assert float(part["tokens"]) == float(full["tokens"]) == sum(len(a) for a in ans)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7),
               part_state["trainable"], full_state["trainable"])
  # Too short a span drops answer tokens: the loss then differs.
  _, short = jax.jit(stage2.make_train_step(m, tx, keep - 2))(state, fr, batch)
  assert float(short["tokens"]) < float(full["tokens"])


def test_lora_and_full_split():
  cfg = opt.OPTConfig(vocab_size=V, hidden_size=D, num_hidden_layers=1, ffn_dim=32,
                      num_attention_heads=2, max_position_embeddings=64, lora_rank=2)
  params = opt.OPTForCausalLM(cfg).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                                        attention_mask=jnp.ones((1, 4), jnp.int32))
  train, frozen = stage2.split_llm_params(params, "lora")
  assert train and all("lora" in k for k in train) and not any("lora" in k for k in frozen)
  merged = stage2.merge_llm_params(train, frozen)
  jax.tree.map(np.testing.assert_array_equal, merged, params)
  full, none = stage2.split_llm_params(params, "full")
  assert none == {} and len(full) == len(train) + len(frozen)


def test_packed_length_by_hand():
  mask = np.zeros((2, 3, 4), np.float32)
  for u, row in enumerate([[2, 4, 1], [3, 3, 3]]):  # answer lengths per user
    for c, n in enumerate(row):
      mask[u, c, :n] = 1
  assert stage2.packed_length(mask) == 9  # user 1: 3 + 3 + 3
  assert stage2.packed_length(mask, 2) == 6  # chunks (2, 4) | (1, pad); (3, 3) | (3, pad)
  assert stage2.packed_length(mask, 1) == 4
  assert stage2.packed_length(np.zeros((1, 2, 3), np.float32)) == 1


def test_cached_ranking_equals_brute_force(setup):
  m, tr, fr, b = setup["model"], setup["trainable"], setup["frozen"], setup["builder"]
  hists, cands = [[1, 2], [0, 3]], [[4, 5, 6], [7, 8, 9]]
  ps, batch = _batch(setup, hists, cands, length=32)
  answers = [[b.answer(i) for i in c] for c in cands]
  a_len = max(len(a) for row in answers for a in row)
  ans, ans_mask = _answer_arrays(b, cands, a_len)
  fast = np.asarray(stage2.make_rank_fn(m, "sum")(tr, fr, batch, ans, ans_mask))
  fast_mean = np.asarray(stage2.make_rank_fn(m, "mean")(tr, fr, batch, ans, ans_mask))
  np.testing.assert_allclose(fast_mean, fast / ans_mask.sum(-1), rtol=1e-6)
  # Candidates in chunks (1 and 2 per chunk: 3 chunks, and 2 with the last one padded)
  # give the scores of all at once.
  for c_chunk in (1, 2):
    chunked = stage2.make_rank_fn(m, "sum", c_chunk=c_chunk)
    np.testing.assert_allclose(np.asarray(jax.jit(chunked)(tr, fr, batch, ans, ans_mask)), fast,
                               rtol=1e-5, atol=1e-5)
  # Packed rows only as long as the longest user's chunk of answers (what the eval stage
  # passes) give the same scores as rows of k × A.
  for c_chunk in (0, 1, 2):
    tight = stage2.packed_length(ans_mask, c_chunk)
    assert tight < (c_chunk or 3) * a_len or c_chunk == 1  # answers of unequal lengths
    packed = stage2.make_rank_fn(m, "sum", c_chunk=c_chunk, pack_len=tight)
    np.testing.assert_allclose(np.asarray(jax.jit(packed)(tr, fr, batch, ans, ans_mask)), fast,
                               rtol=1e-5, atol=1e-5)
  # ... also with the users split over 2 devices, as the eval stage shards them.
  mesh = sharding.make_mesh((-1, 1, 1), jax.devices()[:2])
  put = lambda x: jax.device_put(jnp.asarray(x), sharding.batch_sharding(mesh, np.ndim(x)))
  sharded = jax.jit(stage2.make_rank_fn(m, "sum", c_chunk=2))(
      tr, fr, jax.tree.map(put, batch), put(ans), put(ans_mask))
  np.testing.assert_allclose(np.asarray(sharded), fast, rtol=1e-5, atol=1e-5)
  logits_fn = jax.jit(m.logits)
  # Brute force: each unpadded prompt + answer as one sequence, numpy log-softmax
  # (user 1, whose prompt has left padding in the batch; the padded scorer below covers all).
  for i, p in list(enumerate(ps))[1:]:
    for k, a in enumerate(answers[i]):
      seq = p.ids + a
      one = prompts.pack([p], [a], length=len(seq), num_slots=8, pad_id=PAD)
      one["user_vecs"] = batch["user_vecs"][i : i + 1]
      logits = np.asarray(logits_fn(tr, fr, one), np.float64)[0]
      lp = logits - logits.max(-1, keepdims=True)
      lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
      want = sum(lp[len(p.ids) - 1 + j, tok] for j, tok in enumerate(a))
      np.testing.assert_allclose(fast[i, k], want, rtol=1e-4, atol=1e-4)
  # And the padded full-sequence scorer agrees too.
  full = prompts.pack_candidates(ps, answers, prompt_length=32, answer_length=a_len,
                                 num_slots=8, pad_id=PAD)
  full["user_vecs"] = np.repeat(batch["user_vecs"], 3, axis=0)
  slow = np.asarray(jax.jit(stage2.make_score_fn(m, "sum"))(tr, fr, full)).reshape(2, 3)
  np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("new_tokens", [2, 9])
def test_eval_fn_shares_one_prefill_and_equals_generate_and_rank(setup, new_tokens):
  """make_eval_fn's (tokens, scores) equal greedy generation and cached ranking run apart,
  with a decoding budget below and above the answer length (the shared cache is sized for
  the longer of the two)."""
  from sfubm_jax.llm.decoding import make_greedy_generate

  m, tr, fr, b = setup["model"], setup["trainable"], setup["frozen"], setup["builder"]
  hists, cands = [[1, 2], [0, 3], [5], [2, 6]], [[4, 5, 6], [7, 8, 9], [1, 2, 3], [9, 4, 7]]
  _, batch = _batch(setup, hists, cands, length=32)
  ans, ans_mask = _answer_arrays(b, cands, max(len(b.answer(i)) for c in cands for i in c))
  stops = (EOS, 7)  # a second stop token ends some rows early
  evaluate = jax.jit(stage2.make_eval_fn(m, "sum", 2, max_new_tokens=new_tokens,
                                         stop_ids=stops, pad_id=PAD))
  tokens, scores = jax.device_get(evaluate(tr, fr, batch, ans, ans_mask))
  generate = make_greedy_generate(m.llm, max_new_tokens=new_tokens, eos_token_ids=stops,
                                  pad_token_id=PAD)
  want = np.asarray(generate(merge(tr, fr), m.embed(tr, fr, batch), batch["attention_mask"]))
  np.testing.assert_array_equal(tokens, want)
  assert (want != PAD).any()  # something was generated
  rank = np.asarray(stage2.make_rank_fn(m, "sum")(tr, fr, batch, ans, ans_mask))
  np.testing.assert_allclose(scores, rank, rtol=1e-5, atol=1e-5)
