"""Each attack succeeds on synthetic data without noise (λ = 0) and fails with heavy noise.

Items come in 40 clusters of 10 (unit vectors near a cluster centre); each title holds
two words of its cluster and one word of its own, so the title words are predictable
from the vector up to the cluster.
"""

import jax
import numpy as np
import pytest

from sfubm_jax.federation import attacks, perturb

N, D, CLUSTERS = 400, 16, 40


@pytest.fixture(scope="module")
def catalogue():
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((CLUSTERS, D))
  cluster = np.repeat(np.arange(CLUSTERS), N // CLUSTERS)
  e = centres[cluster] + 0.35 * rng.standard_normal((N, D))
  e = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
  titles = [f"w{c}a w{c}b item{i}" for i, c in enumerate(cluster)]
  return e, titles


@pytest.fixture(scope="module")
def figures(catalogue):
  e, titles = catalogue
  out = {}
  for lam in (0.0, 10.0):
    upload, _ = perturb.perturb(jax.random.key(123), e, lam, tile=64)  # the client's run
    out[lam] = attacks.attack_figures(e, np.asarray(upload), titles, lam,
                                      attacks.AttackConfig(max_items=200, seed=1, tile=64))
  return out


def test_mechanism_aware_reidentification(figures):
  assert figures[0.0]["mech_top10"] > 0.8 and figures[0.0]["mech_mrr"] > 0.3
  assert figures[10.0]["mech_top10"] < 0.1 and figures[10.0]["mech_mrr"] < 0.08


@pytest.mark.parametrize("name", ["ridge", "mlp"])
def test_learned_denoiser(figures, name):
  assert figures[0.0][f"{name}_top10"] > 0.6
  assert figures[10.0][f"{name}_top10"] < 0.1  # chance: 10 / 400


def test_bag_of_words_inversion(figures):
  assert figures[0.0]["bow_f1"] > 0.5 and figures[0.0]["bow_precision"] > 0.6
  assert figures[10.0]["bow_f1"] < 0.15


def test_ranks_against_brute_force():
  rng = np.random.default_rng(2)
  q, c = rng.standard_normal((7, 5)), rng.standard_normal((30, 5))
  truth, exclude = rng.integers(30, size=7), rng.integers(30, size=7)
  exclude[0] = truth[0]
  cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
      c / np.linalg.norm(c, axis=1, keepdims=True)).T
  want = []
  for k in range(7):
    if truth[k] == exclude[k]:
      want.append(30)
      continue
    others = [j for j in range(30) if j != exclude[k]]
    want.append(sum(cos[k, j] > cos[k, truth[k]] for j in others))
  np.testing.assert_array_equal(attacks.ranks(q.astype(np.float32), c.astype(np.float32),
                                              truth, exclude), want)
  fig = attacks.rank_figures(np.array([0, 3, 30]), "x", 30)
  assert fig == pytest.approx({"x_top1": 1 / 3, "x_top10": 2 / 3, "x_mrr": (1 + 1 / 4) / 3})


def test_ridge_matches_scikit_learn():
  from sklearn.linear_model import Ridge

  rng = np.random.default_rng(3)
  x, y = rng.standard_normal((50, 4)), rng.standard_normal((50, 3))
  w = attacks.ridge(x, y, alpha=2.0)
  ref = Ridge(alpha=2.0).fit(x, y)
  np.testing.assert_allclose(w[:-1], ref.coef_.T, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(w[-1], ref.intercept_, rtol=1e-6, atol=1e-8)
