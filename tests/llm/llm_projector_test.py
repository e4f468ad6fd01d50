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
