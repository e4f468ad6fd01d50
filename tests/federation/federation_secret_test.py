"""The client secret (SPEC §0): a server that knows the config cannot strip the noise,
row order says nothing about catalogue order, and reruns reproduce the upload."""

import zlib

import jax
import numpy as np
import pytest

from sfubm_jax.errors import UserError
from sfubm_jax.federation import client, perturb, secret

N, D, LAM = 200, 16, 0.1


def _e(seed=0):
  x = np.random.default_rng(seed).standard_normal((N, D)).astype(np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return np.concatenate([np.zeros((1, D), np.float32), x])


def _config_keys(seeds=range(0, 16), client_name="food"):
  """Every key a server could derive from public config: seeds, with and without the name."""
  name = zlib.crc32(client_name.encode("utf-8")) & 0x7FFFFFFF
  for s in seeds:
    base = jax.random.key(s)
    yield base
    yield jax.random.fold_in(base, name)


def _regenerated_rows(upload, e, key):
  """The regeneration attack: ê'_j = e_j + λ·ε'_j for the guessed key; which upload rows
  equal some ê'_j (the upload of item i is ê_j*(i))."""
  e_hat = np.asarray(perturb.add_noise(key, e[1:], LAM))  # [N, D]
  gap = np.abs(upload[:, None, :] - e_hat[None, :, :]).max(-1)  # [N, N]
  return gap.min(1) < 1e-5  # [N] row reproduced exactly


def test_the_attack_works_against_a_config_derived_key():
  # Sanity check of the attack: with the old key (config seed 1 folded with the client
  # name) every upload row is reproduced.
  e = _e()
  old_key = jax.random.fold_in(jax.random.key(1),
                               zlib.crc32(b"food") & 0x7FFFFFFF)
  upload, _ = perturb.perturb(old_key, e[1:], LAM, tile=64)
  assert _regenerated_rows(np.asarray(upload), e, old_key).all()


def test_regeneration_recovers_nothing_with_the_client_secret(tmp_path):
  e = _e()
  cfg = client.PrivacyConfig(noise_scale=LAM, tile=64)
  up, _ = client.make_upload("food", e, cfg, secret.load_or_create(tmp_path))
  for key in _config_keys():
    assert not _regenerated_rows(up.vectors, e, key).any()


def test_secret_is_os_random_kept_private_and_reproduces_the_upload(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  sa, sb = secret.load_or_create(a), secret.load_or_create(b)
  assert sa != sb and len(sa) == 32  # fresh OS randomness per client
  assert (a / secret.SECRET_FILE).stat().st_mode & 0o077 == 0
  assert secret.load_or_create(a) == sa  # kept: a rerun gets the same secret
  e = _e()
  cfg = client.PrivacyConfig(noise_scale=LAM, tile=64)
  first, _ = client.make_upload("food", e, cfg, sa)
  again, _ = client.make_upload("food", e, cfg, secret.load_or_create(a))
  assert first.vectors.tobytes() == again.vectors.tobytes()


def test_row_order_is_independent_of_catalogue_order(tmp_path):
  e = _e()
  cfg = client.PrivacyConfig(noise_scale=LAM, tile=64)
  s = secret.load_or_create(tmp_path)
  up, _ = client.make_upload("food", e, cfg, s)
  upload, j_star = perturb.perturb(secret.noise_key(s), e[1:], LAM, tile=64)
  order = secret.upload_order(s, N)
  np.testing.assert_array_equal(up.vectors, np.asarray(upload)[order])
  # An attacker guessing "row k is item k" is right about as often as chance (1/N each).
  assert (order == np.arange(N)).sum() <= 5
  assert abs(np.corrcoef(order, np.arange(N))[0, 1]) < 0.25
  # The order is a function of the secret alone: permuting the catalogue does not
  # change which row position a catalogue slot goes to.
  assert np.array_equal(secret.upload_order(s, N), order)
  assert not np.array_equal(secret.upload_order(bytes(32), N), order)


def test_noise_scale_and_raw_upload_checks():
  for bad in (0.0, -0.1, float("nan")):
    with pytest.raises(UserError, match="must be > 0"):
      client.PrivacyConfig(noise_scale=bad)
  with pytest.raises(UserError, match="allow_raw_upload=True"):
    client.PrivacyConfig(noise_scale=0.1, replace_with="original")
  cfg = client.PrivacyConfig(noise_scale=0.1, replace_with="original", allow_raw_upload=True)
  _, figures = client.make_upload("food", _e(), cfg, bytes(32))
  assert figures["unprotected"] is True
  _, figures = client.make_upload("food", _e(), client.PrivacyConfig(noise_scale=0.1), bytes(32))
  assert figures["unprotected"] is False
  with pytest.raises(UserError, match="must be > 0"):
    client.make_upload("food", _e(), client.PrivacyConfig(noise_scale=0.1), bytes(32),
                       noise_scale=0.0)
