"""Flax OPT against `transformers`' PyTorch OPT on the same random weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sfubm_jax.models.causal_lm.lora import lora_mask
from sfubm_jax.models.causal_lm.opt.checkpoint import abstract_params, init_opt, load_opt
from sfubm_jax.models.causal_lm.opt.model import OPTConfig, OPTForCausalLM, count_params, init_cache
from tests.models import opt_hf_reference as ref

LENGTHS = [7, 3, 10, 1]  # left padded to 10


def _load(tmp_path, style, **changes):
  hf = ref.hf_model(style, **changes)
  cfg, params = load_opt(ref.save_hf(hf, tmp_path / style))
  return hf, cfg, params


@pytest.mark.parametrize("style,changes", [
    ("pre_ln", {}), ("post_ln", {}),
    ("pre_ln", {"enable_bias": False, "_remove_final_layer_norm": True}),
])
def test_logits_match_transformers_on_left_padded_batch(tmp_path, style, changes):
  hf, cfg, params = _load(tmp_path, style, **changes)
  ids, mask = ref.left_padded_batch(np.random.default_rng(0), cfg.vocab_size, LENGTHS, 10)
  want = ref.hf_logits(hf, ids, mask)
  got, cache = OPTForCausalLM(cfg).apply(params, jnp.asarray(ids), attention_mask=mask)
  assert cache is None and got.dtype == jnp.float32 and got.shape == want.shape
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(got)[real], want[real], atol=1e-4, rtol=0)
  assert np.abs(want[real]).max() > 0.1  # not a vacuous comparison


def test_inputs_embeds_equal_input_ids_and_soft_prompts_matter(tmp_path):
  _, cfg, params = _load(tmp_path, "post_ln")
  model = OPTForCausalLM(cfg)
  ids, mask = ref.left_padded_batch(np.random.default_rng(1), cfg.vocab_size, LENGTHS, 10)
  embeds = model.apply(params, jnp.asarray(ids), method=OPTForCausalLM.embed_tokens)
  assert embeds.shape == (4, 10, cfg.word_embed_proj_dim)
  by_ids, _ = model.apply(params, jnp.asarray(ids), attention_mask=mask)
  by_embeds, _ = model.apply(params, inputs_embeds=embeds, attention_mask=mask)
  np.testing.assert_array_equal(np.asarray(by_ids), np.asarray(by_embeds))
  last3, _ = model.apply(params, inputs_embeds=embeds, attention_mask=mask, logits_to_keep=3)
  np.testing.assert_allclose(np.asarray(last3), np.asarray(by_ids)[:, -3:], atol=1e-6)
  soft = embeds.at[:, 8].set(1.0)  # a soft prompt in slot 8 changes real slots >= 8 only
  spliced, _ = model.apply(params, inputs_embeds=soft, attention_mask=mask)
  diff = np.abs(np.asarray(spliced) - np.asarray(by_ids)).max(-1)  # [B, T]
  real = mask.astype(bool)
  assert diff[:, :8][real[:, :8]].max() < 1e-6
  assert diff[:, 8:][real[:, 8:] & real[:, 8:9]].min() > 1e-3
  assert diff[3, 9] < 1e-6  # row 3 is padding in slot 8: the masked slot is ignored


@pytest.mark.parametrize("style", ["pre_ln", "post_ln"])
def test_cached_steps_equal_full_forward(tmp_path, style):
  _, cfg, params = _load(tmp_path, style)
  model = OPTForCausalLM(cfg)
  ids, mask = ref.left_padded_batch(np.random.default_rng(2), cfg.vocab_size, LENGTHS, 10)
  full, _ = model.apply(params, jnp.asarray(ids), attention_mask=mask)
  slots = np.concatenate([mask, np.zeros((4, 3), mask.dtype)], axis=1)  # 13 cache slots
  slots[:, 7:10] = mask[:, 7:10]
  step_mask = slots.copy()
  step_mask[:, 7:] = 0
  step_mask[:, :7] = mask[:, :7]
  cache = init_cache(cfg, 4, 13)
  apply = jax.jit(model.apply)  # one trace per input length
  prefix, cache = apply(params, jnp.asarray(ids[:, :7]), attention_mask=step_mask,
                              cache=cache)
  outs = [np.asarray(prefix)]
  for t in range(7, 10):
    step_mask[:, t] = mask[:, t]
    logits, cache = apply(params, jnp.asarray(ids[:, t:t + 1]), attention_mask=step_mask,
                          cache=cache)
    outs.append(np.asarray(logits))
  assert int(cache["index"]) == 10
  real = mask.astype(bool)
  np.testing.assert_allclose(np.concatenate(outs, 1)[real], np.asarray(full)[real], atol=1e-5)


def test_remat_gives_same_logits_and_input_gradients(tmp_path):
  _, cfg, params = _load(tmp_path, "pre_ln")
  ids, mask = ref.left_padded_batch(np.random.default_rng(3), cfg.vocab_size, LENGTHS, 10)
  embeds = OPTForCausalLM(cfg).apply(params, jnp.asarray(ids), method=OPTForCausalLM.embed_tokens)

  def loss(model, e):
    logits, _ = model.apply(params, inputs_embeds=e, attention_mask=mask)
    return jnp.sum(jax.nn.log_softmax(logits)[..., 5] * mask)

  plain = jax.jit(jax.value_and_grad(lambda e: loss(OPTForCausalLM(cfg), e)))(embeds)
  remat_cfg = OPTConfig(**{**cfg.__dict__, "remat": True})
  remat = jax.jit(jax.value_and_grad(lambda e: loss(OPTForCausalLM(remat_cfg), e)))(embeds)
  np.testing.assert_allclose(remat[0], plain[0], rtol=1e-5)
  np.testing.assert_allclose(remat[1], plain[1], atol=1e-5)
  assert np.abs(np.asarray(plain[1])).max() > 0


def test_bf16_compute_tracks_fp32(tmp_path):
  hf, cfg, params = _load(tmp_path, "pre_ln")
  ids, mask = ref.left_padded_batch(np.random.default_rng(4), cfg.vocab_size, LENGTHS, 10)
  want = ref.hf_logits(hf, ids, mask)
  bf_cfg, bf_params = load_opt(tmp_path / "pre_ln", dtype="bfloat16", param_dtype="bfloat16")
  assert jax.tree.leaves(bf_params)[0].dtype == jnp.bfloat16
  got, _ = OPTForCausalLM(bf_cfg).apply(bf_params, jnp.asarray(ids), attention_mask=mask)
  real = mask.astype(bool)
  assert got.dtype == jnp.float32
  err = np.abs(np.asarray(got)[real] - want[real]).max()
  assert err < 0.05 * np.abs(want[real]).max(), err


def test_lora_starts_as_identity_and_is_named_lora(tmp_path):
  _, cfg, params = _load(tmp_path, "pre_ln")
  lcfg, lparams = load_opt(tmp_path / "pre_ln", lora_rank=4, lora_alpha=8.0)
  flags = jax.tree_util.tree_flatten_with_path(lora_mask(lparams))[0]
  lora_paths = ["/".join(str(k.key) for k in path) for path, flag in flags if flag]
  assert len(lora_paths) == cfg.num_hidden_layers * 4  # q and v, A and B
  assert all(("q_proj" in p or "v_proj" in p) for p in lora_paths)
  ids, mask = ref.left_padded_batch(np.random.default_rng(5), cfg.vocab_size, LENGTHS, 10)
  base, _ = OPTForCausalLM(cfg).apply(params, jnp.asarray(ids), attention_mask=mask)
  lora, _ = OPTForCausalLM(lcfg).apply(lparams, jnp.asarray(ids), attention_mask=mask)
  np.testing.assert_array_equal(np.asarray(base), np.asarray(lora))  # B = 0
  bumped = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.5 if "lora_b" in str(p) else x, lparams)
  moved, _ = OPTForCausalLM(lcfg).apply(bumped, jnp.asarray(ids), attention_mask=mask)
  assert np.abs(np.asarray(moved) - np.asarray(base)).max() > 1e-3


def _hand_count(v, d, layers, ffn, pos, proj=None, final_ln=True):
  attn = 4 * (d * d + d)
  mlp = d * ffn + ffn + ffn * d + d
  per_layer = attn + mlp + 2 * 2 * d
  emb = v * (proj or d) + (pos + 2) * d + (2 * (proj * d) if proj else 0)
  return emb + layers * per_layer + (2 * d if final_ln else 0)


def test_eval_shape_of_published_configs_gives_their_parameter_counts():
  opt67 = OPTConfig(vocab_size=50272, hidden_size=4096, num_hidden_layers=32, ffn_dim=16384,
                    num_attention_heads=32, max_position_embeddings=2048,
                    dtype="bfloat16", param_dtype="bfloat16")
  shapes = abstract_params(opt67)
  assert count_params(shapes) == 6_658_473_984 == _hand_count(50272, 4096, 32, 16384, 2048)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(shapes))
  opt350 = OPTConfig(vocab_size=50272, hidden_size=1024, num_hidden_layers=24, ffn_dim=4096,
                     num_attention_heads=16, word_embed_proj_dim=512,
                     do_layer_norm_before=False)
  expected = _hand_count(50272, 1024, 24, 4096, 2048, proj=512, final_ln=False)
  assert count_params(abstract_params(opt350)) == 331_196_416 == expected


def test_init_opt_matches_hf_layout_and_init():
  cfg = OPTConfig(**{**ref.POST_LN, "vocab_size": 2048, "init_std": 0.05})
  params = jax.device_get(init_opt(cfg, jax.random.key(0)))
  dec = params["params"]["decoder"]
  assert dec["embed_positions"]["embedding"].shape == (66, 32)
  assert dec["project_in"]["kernel"].shape == (16, 32)
  assert "final_layer_norm" not in dec  # post-LN models have none
  emb = dec["embed_tokens"]["embedding"]  # HF: N(0, init_std²), padding row zero
  assert (emb[cfg.pad_token_id] == 0).all()
  assert abs(emb.std() - 0.05) < 0.002 and abs(emb.mean()) < 0.002
  fc1 = dec["layers_1"]["fc1"]
  assert fc1["kernel"].shape == (32, 64) and (fc1["bias"] == 0).all()
  assert (dec["layers_0"]["final_layer_norm"]["scale"] == 1).all()
  other = jax.device_get(init_opt(cfg, jax.random.key(1)))["params"]["decoder"]
  assert not np.allclose(other["layers_1"]["fc1"]["kernel"], fc1["kernel"])
