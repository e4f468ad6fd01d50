"""Perturbation and privacy figures against numpy brute-force references (SPEC §3)."""

import jax
import numpy as np
import pytest

from sfubm_jax.federation import neighbours, perturb, privacy


def _unit(x):
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_nearest_other(x):
  s = _unit(x.astype(np.float64)) @ _unit(x.astype(np.float64)).T
  np.fill_diagonal(s, -np.inf)
  return s.argmax(1), s


def _assert_same_argmax(got, ref, s, atol=1e-5):
  """Equal where the reference maximum is unambiguous; otherwise an equally good pick."""
  best = s[np.arange(len(ref)), ref]
  assert np.all(s[np.arange(len(got)), got] >= best - atol)
  top2 = np.sort(s, axis=1)[:, -2:]
  clear = top2[:, 1] - top2[:, 0] > atol
  np.testing.assert_array_equal(got[clear], ref[clear])


@pytest.mark.parametrize("n,tile", [(2, 8), (37, 8), (64, 16), (130, 64), (50, 1000)])
def test_nearest_other_matches_brute_force(n, tile):
  x = np.random.default_rng(n).standard_normal((n, 12)).astype(np.float32)
  got = np.asarray(neighbours.nearest_other(x, tile=tile))
  ref, s = _brute_nearest_other(x)
  assert np.all(got != np.arange(n))  # never the item itself
  _assert_same_argmax(got, ref, s)


def test_nearest_other_never_picks_itself_even_for_duplicates():
  base = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
  x = np.concatenate([base, base, base])  # every vector appears 3 times
  got = np.asarray(neighbours.nearest_other(x, tile=4))
  assert np.all(got != np.arange(15))
  np.testing.assert_array_equal(got % 5, np.arange(15) % 5)  # a copy of itself, not itself


def test_nearest_neighbour_matches_brute_force():
  rng = np.random.default_rng(1)
  q, k = rng.standard_normal((45, 10)), rng.standard_normal((71, 10))
  got = neighbours.nearest_neighbour(q.astype(np.float32), k.astype(np.float32), tile=16)
  got = np.asarray(got)
  s = _unit(q) @ _unit(k).T
  _assert_same_argmax(got, s.argmax(1), s)


@pytest.mark.parametrize("replace_with", ["perturbed", "original"])
def test_perturb_matches_numpy_reference_with_same_key(replace_with):
  rng = np.random.default_rng(2)
  e = _unit(rng.standard_normal((150, 24))).astype(np.float32)
  key = jax.random.key(7)
  upload, j_star = perturb.perturb(key, e, 0.1, replace_with=replace_with, tile=32)
  e_hat = np.asarray(perturb.add_noise(key, e, 0.1))  # the same noise, drawn from the key
  assert not np.allclose(e_hat, e)  # noise was added
  ref, s = _brute_nearest_other(e_hat)
  j_star = np.asarray(j_star)
  _assert_same_argmax(j_star, ref, s)
  assert np.all(j_star != np.arange(150))
  source = e_hat if replace_with == "perturbed" else e
  np.testing.assert_allclose(np.asarray(upload), source[j_star], rtol=0, atol=1e-6)


def test_noise_scale_scales_one_draw():
  e = np.zeros((4, 3), np.float32)
  key = jax.random.key(3)
  a = np.asarray(perturb.add_noise(key, e, 0.1))
  b = np.asarray(perturb.add_noise(key, e, 0.5))
  np.testing.assert_allclose(b, 5 * a, rtol=1e-6)
  assert abs(np.std(np.asarray(perturb.add_noise(key, np.zeros((4000, 8)), 1.0))) - 1) < 0.03


def test_privacy_figures_match_numpy():
  rng = np.random.default_rng(4)
  e = _unit(rng.standard_normal((90, 16))).astype(np.float32)
  upload = (e[rng.permutation(90)] + 0.3 * rng.standard_normal((90, 16))).astype(np.float32)
  figures = privacy.privacy_figures(upload, e, tile=32)
  cos = np.sum(_unit(e) * _unit(upload), axis=1)
  assert figures["sim"] == pytest.approx(cos.mean(), abs=1e-5)
  guess = (_unit(upload) @ _unit(e).T).argmax(1)
  assert figures["reid@1"] == pytest.approx(np.mean(guess == np.arange(90)))
  # An upload of the raw vectors is fully re-identified; of the neighbours' raw ones, never.
  assert privacy.privacy_figures(e, e, tile=32) == pytest.approx({"sim": 1.0, "reid@1": 1.0})
  others = e[np.asarray(neighbours.nearest_other(e, tile=32))]
  assert privacy.privacy_figures(others, e, tile=32)["reid@1"] == 0.0


def test_neighbour_search_memory_is_tiled_not_n_squared():
  n, tile = 20_000, 256
  x = jax.ShapeDtypeStruct((n, 64), np.float32)
  for fn in (lambda a: neighbours.nearest_other(a, tile=tile),
             lambda a: neighbours.nearest_neighbour(a, a, tile=tile),
             lambda a: perturb.perturb(jax.random.key(0), a, 0.1, tile=tile)):
    stats = jax.jit(fn).lower(x).compile().memory_analysis()
    assert stats.temp_size_in_bytes < n * n * 4 / 50, stats.temp_size_in_bytes  # N² = 1.6 GB
