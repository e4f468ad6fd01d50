"""Projectors P_u, P_i against a numpy re-implementation."""

import jax
import numpy as np
from scipy.special import erf

from sfubm_jax.models.projector import Projector, SoftPrompts


def test_soft_prompts_match_numpy():
  m = SoftPrompts(out_dim=6, hidden=5)
  u, it = np.random.default_rng(0).normal(size=(2, 3)), np.ones((2, 4, 3))
  params = m.init(jax.random.key(0), u, it)
  p_u, p_i = m.apply(params, u, it)
  pu, pi = params["params"]["user"], params["params"]["item"]
  h = u @ np.asarray(pu["hidden"]["kernel"]) + np.asarray(pu["hidden"]["bias"])
  gelu_exact = 0.5 * h * (1 + erf(h / np.sqrt(2)))
  want_u = gelu_exact @ np.asarray(pu["out"]["kernel"]) + np.asarray(pu["out"]["bias"])
  np.testing.assert_allclose(p_u, want_u, atol=2e-3)  # flax gelu = tanh approximation
  h = np.tanh(it @ np.asarray(pi["hidden"]["kernel"]) + np.asarray(pi["hidden"]["bias"]))
  want_i = h @ np.asarray(pi["out"]["kernel"]) + np.asarray(pi["out"]["bias"])
  np.testing.assert_allclose(p_i, want_i, rtol=1e-5, atol=1e-5)
  assert p_u.shape == (2, 6) and p_i.shape == (2, 4, 6)


def test_linear_projector_has_no_hidden_layer():
  m = Projector(out_dim=4, hidden=0)
  x = np.arange(6.0).reshape(2, 3)
  params = m.init(jax.random.key(1), x)
  assert set(params["params"]) == {"out"}
  k, b = params["params"]["out"]["kernel"], params["params"]["out"]["bias"]
  np.testing.assert_allclose(m.apply(params, x), x @ np.asarray(k) + np.asarray(b), rtol=1e-6)


def test_match_rms_scales_outputs_to_the_target_and_keeps_their_direction():
  from sfubm_jax.models.projector import match_rms

  m = SoftPrompts(out_dim=6, hidden=5)
  rng = np.random.default_rng(3)
  u, it = 15.0 * rng.normal(size=(8, 3)), 3.0 * rng.normal(size=(1, 10, 4))
  params = m.init(jax.random.key(0), u, it)
  # A non-zero bias too: the output layer's bias must scale with its kernel.
  params["params"]["item"]["out"]["bias"] = np.full(6, 0.5, np.float32)
  before_u, before_i = (np.asarray(x, np.float64) for x in m.apply(params, u, it))
  scaled = match_rms(params, u, it, m, target=0.135)
  after_u, after_i = (np.asarray(x, np.float64) for x in m.apply(scaled, u, it))
  for before, after in ((before_u, after_u), (before_i, after_i)):
    np.testing.assert_allclose(np.sqrt(np.mean(after**2)), 0.135, rtol=1e-5)
    factor = np.sqrt(np.mean(after**2)) / np.sqrt(np.mean(before**2))
    np.testing.assert_allclose(after, before * factor, rtol=1e-5, atol=1e-7)
  # Only the output layers change.
  for side in ("user", "item"):
    np.testing.assert_array_equal(scaled["params"][side]["hidden"]["kernel"],
                                  params["params"][side]["hidden"]["kernel"])


def tiny_llama(vocab: int, hidden: int):
  """A random one-layer Llama (model, params) of the given vocabulary and width."""
  import jax.numpy as jnp

  from sfubm_jax.models.causal_lm.llama import model as llama

  cfg = llama.LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1,
                          intermediate_size=2 * hidden, num_attention_heads=2,
                          num_key_value_heads=1, max_position_embeddings=32,
                          tie_word_embeddings=True)
  model = llama.LlamaForCausalLM(cfg)
  params = model.init(jax.random.key(0), jnp.ones((1, 4), jnp.int32),
                      attention_mask=jnp.ones((1, 4), jnp.int32))
  return model, params


def test_token_rms_is_the_embedding_tables_rms():
  from sfubm_jax.llm.context import token_rms

  model, params = tiny_llama(300, 16)
  table = np.asarray(jax.tree_util.tree_leaves(
      {k: v for k, v in params["params"]["model"].items() if k == "embed_tokens"})[0])
  assert table.shape == (300, 16)
  np.testing.assert_allclose(token_rms(model, params), np.sqrt(np.mean(table**2)), rtol=1e-5)


def test_fit_targets_reaches_a_reachable_target_and_reports_numpy_errors():
  from sfubm_jax.models.projector import fit_targets

  m = SoftPrompts(out_dim=5, hidden=0)  # linear maps: the targets below are reachable
  rng = np.random.default_rng(4)
  u, it = rng.normal(size=(64, 3)), rng.normal(size=(40, 4))
  yu = u @ rng.normal(size=(3, 5)) + 0.3
  yi = it @ rng.normal(size=(4, 5)) - 0.2
  params = m.init(jax.random.key(0), u, it[None])
  p_u, p_i = (np.asarray(x, np.float64) for x in m.apply(params, u, it[None]))
  fitted, err = fit_targets(params, m, u, yu, it, yi, steps=600, lr=0.05)
  # "before" is the relative MSE of the initial maps, computed independently.
  np.testing.assert_allclose(err["user_rel_mse_before"],
                             np.mean((p_u - yu) ** 2) / np.mean(yu**2), rtol=1e-4)
  np.testing.assert_allclose(err["item_rel_mse_before"],
                             np.mean((p_i[0] - yi) ** 2) / np.mean(yi**2), rtol=1e-4)
  assert err["user_rel_mse"] < 1e-3 and err["item_rel_mse"] < 1e-3
  f_u, f_i = m.apply(fitted, u, it[None])
  np.testing.assert_allclose(f_u, yu, atol=0.05)
  np.testing.assert_allclose(f_i[0], yi, atol=0.05)


def test_title_embeddings_are_masked_means_of_token_embeddings():
  from sfubm_jax.llm.context import title_embeddings

  model, params = tiny_llama(50, 8)
  table = np.asarray(params["params"]["model"]["embed_tokens"]["embedding"])
  titles = [[], [3, 7, 7], [0], [49, 1]]
  out = title_embeddings(model, params, titles)
  expected = [np.zeros(8)] + [table[t].mean(0) for t in titles[1:]]
  np.testing.assert_allclose(out, np.stack(expected), rtol=1e-5, atol=1e-7)
