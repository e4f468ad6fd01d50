"""k-means++ and Lloyd against scikit-learn and numpy references (SPEC §4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from sfubm_jax.federation import kmeans


def _blobs(n, d, centres, seed, spread=0.6):
  rng = np.random.default_rng(seed)
  c = rng.standard_normal((centres, d))
  x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d))
  return x.astype(np.float32)


def _sq_dists(x, c):
  return ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)


def test_inertia_within_2_percent_of_sklearn_over_seeds():
  x = _blobs(3000, 16, 30, 0)
  ours, theirs = [], []
  for seed in range(5):
    res = kmeans.kmeans(jax.random.key(seed), x, k=20, tol=1e-4, max_iter=300)
    sk = KMeans(20, init="k-means++", n_init=1, tol=1e-4, max_iter=300, random_state=seed)
    ours.append(float(res.inertia))
    theirs.append(sk.fit(x).inertia_)
    # The reported inertia and labels belong to the returned centres.
    d2 = _sq_dists(x, np.asarray(res.centres))
    np.testing.assert_array_equal(np.asarray(res.labels), d2.argmin(1))
    assert float(res.inertia) == pytest.approx(d2.min(1).sum(), rel=1e-4)
  # Single runs land in different local minima; their mean over seeds must agree.
  assert abs(np.mean(ours) / np.mean(theirs) - 1) <= 0.02, (ours, theirs)


def test_seeding_follows_d2_sampling():
  x = np.array([[0, 0], [1, 0], [0, 2], [3, 3], [-1, 4]], np.float32)
  keys = jax.random.split(jax.random.key(0), 40_000)
  _, idx = jax.vmap(lambda k: kmeans.kmeans_plusplus(k, x, k=2, trials=1))(keys)
  idx = np.asarray(idx)
  first_freq = np.bincount(idx[:, 0], minlength=5) / len(idx)
  np.testing.assert_allclose(first_freq, 0.2, atol=0.01)  # first centre uniform
  d2 = _sq_dists(x, x)
  for f in range(5):
    second = idx[idx[:, 0] == f, 1]
    expected = d2[f] / d2[f].sum()  # P(j) ∝ D(x_j)², zero for the chosen point
    np.testing.assert_allclose(np.bincount(second, minlength=5) / len(second), expected,
                               atol=0.025)


def test_greedy_seeding_lowers_the_potential():
  x = _blobs(600, 8, 12, 5)

  def potential(trials, key):
    c, _ = kmeans.kmeans_plusplus(key, x, k=12, trials=trials)
    return _sq_dists(x, np.asarray(c)).min(1).sum()

  keys = jax.random.split(jax.random.key(1), 20)
  plain = np.mean([potential(1, k) for k in keys])
  greedy = np.mean([potential(0, k) for k in keys])  # 0 = 2 + floor(ln K) = 4 trials
  assert kmeans.default_trials(12) == 4
  assert greedy < 0.9 * plain


def _numpy_lloyd_step(x, c):
  lab = _sq_dists(x, c).argmin(1)
  return np.stack([x[lab == j].mean(0) for j in range(len(c))])


@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_one_lloyd_step_matches_numpy_for_any_chunk(chunk):
  x = _blobs(301, 5, 4, 6)
  c0 = x[[0, 50, 100, 150]]
  got = kmeans.lloyd(x, c0, tol=0.0, max_iter=1, chunk=chunk)
  assert int(got.iterations) == 1
  np.testing.assert_allclose(np.asarray(got.centres), _numpy_lloyd_step(x, c0), atol=1e-5)
  ref_shift = np.linalg.norm(_numpy_lloyd_step(x, c0) - c0, axis=1).max()
  assert float(got.shift) == pytest.approx(ref_shift, rel=1e-4)


def test_stops_at_tol_or_max_iter():
  x = _blobs(2000, 8, 10, 7, spread=1.5)
  c0 = x[:10]
  capped = kmeans.lloyd(x, c0, tol=0.0, max_iter=3)
  assert int(capped.iterations) == 3
  free = kmeans.lloyd(x, c0, tol=1e-3, max_iter=500)
  assert 3 < int(free.iterations) < 500 and float(free.shift) < 1e-3
  # One more update from the result moves no centre by tol or more.
  again = kmeans.lloyd(x, free.centres, tol=0.0, max_iter=1)
  assert float(again.shift) < 1e-3


def test_empty_cluster_is_reseeded_at_the_farthest_point_never_nan():
  x = _blobs(200, 3, 2, 8)
  c0 = np.stack([x[0], x[1], np.full(3, 1e3, np.float32)])  # the third centre gets nobody
  one = kmeans.lloyd(x, c0, tol=0.0, max_iter=1)
  centres = np.asarray(one.centres)
  assert np.isfinite(centres).all()
  d2 = _sq_dists(x, c0[:2]).min(1)  # distances of the first assignment (third centre empty)
  np.testing.assert_allclose(centres[2], x[d2.argmax()])
  # More clusters than distinct points: duplicates everywhere, still finite.
  dup = np.repeat(x[:3], 10, axis=0)
  res = kmeans.kmeans(jax.random.key(0), dup, k=5, tol=1e-4, max_iter=20)
  assert np.isfinite(np.asarray(res.centres)).all() and np.isfinite(float(res.inertia))
  assert float(res.inertia) == pytest.approx(0.0, abs=1e-4)


def test_kmeans_rejects_k_larger_than_n():
  with pytest.raises(ValueError, match="K <= N"):
    kmeans.kmeans(jax.random.key(0), jnp.zeros((3, 2)), k=4)
