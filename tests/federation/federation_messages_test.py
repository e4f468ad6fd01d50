"""The wire boundary (SPEC §0): message round trip, corruption refused, server inputs."""

import dataclasses
import inspect
import json
import typing

import numpy as np
import pytest

from sfubm_jax.data.split import DomainSplit
from sfubm_jax.errors import UserError
from sfubm_jax.federation import client, messages, secret, server
from sfubm_jax.federation.messages import Reply, Upload


def _vectors(n, d, seed=0):
  return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _reencode_header(data: bytes, **changes) -> bytes:
  """Rewrites header fields and recomputes a valid checksum (a well-formed message)."""
  end = data.index(b"\n", len(messages.MAGIC))
  header = json.loads(data[len(messages.MAGIC) : end])
  payload = data[end + 1 :]
  header.update(changes)
  header.pop("sha256")
  header["sha256"] = messages._checksum(header, payload)
  return messages.MAGIC + json.dumps(header).encode() + b"\n" + payload


def test_round_trip(tmp_path):
  up = Upload(client="food", vectors=_vectors(13, 5))
  messages.write_message(tmp_path / "food.msg", up)
  back = messages.read_upload(tmp_path / "food.msg")
  assert back.client == "food" and back.digest() == up.digest()
  np.testing.assert_array_equal(back.vectors, up.vectors)
  reply = Reply(client="food", vectors=_vectors(13, 5, 1), answers=up.digest())
  back = messages.decode(messages.encode(reply), "reply")
  assert back.answers == up.digest()
  np.testing.assert_array_equal(back.vectors, reply.vectors)


def test_every_bit_flip_is_refused():
  data = messages.encode(Upload(client="kitchen", vectors=_vectors(6, 4)))
  rng = np.random.default_rng(0)
  positions = list(range(len(data))) if len(data) < 600 else rng.choice(len(data), 600, False)
  for pos in positions:
    for bit in (0, 3, 7):
      corrupt = bytearray(data)
      corrupt[pos] ^= 1 << bit
      with pytest.raises(UserError, match="refused"):
        messages.decode(bytes(corrupt), "upload")


@pytest.mark.parametrize("change,match", [
    (dict(version=2), "version"),
    (dict(format="other"), "version"),
    (dict(kind="reply"), "expected 'upload'"),
    (dict(count=7), "payload has"),
    (dict(dim=3), "payload has"),
    (dict(dtype="float16"), "dtype"),
    (dict(extra="user ids"), "fields"),
])
def test_wrong_header_is_refused_even_with_a_valid_checksum(change, match):
  data = messages.encode(Upload(client="food", vectors=_vectors(6, 4)))
  with pytest.raises(UserError, match=match):
    messages.decode(_reencode_header(data, **change), "upload")


def test_truncated_or_padded_payload_is_refused():
  data = messages.encode(Upload(client="food", vectors=_vectors(6, 4)))
  for bad in (data[:-4], data + b"\0\0\0\0", data[:10]):
    with pytest.raises(UserError, match="refused"):
      messages.decode(bad, "upload")


def test_client_refuses_a_reply_that_does_not_fit_its_catalogue():
  e = np.concatenate([np.zeros((1, 8), np.float32), _vectors(20, 8)])
  cfg = client.PrivacyConfig(noise_scale=0.1, tile=8)
  key = bytes(range(32))
  up, _ = client.make_upload("food", e, cfg, key)
  sent = {"client": "food", "count": 20, "dim": 8, "digest": up.digest()}
  ok = Reply(client="food", vectors=_vectors(20, 8), answers=up.digest())
  federated = client.accept_reply(ok, sent, key)
  assert federated.shape == (21, 8) and not federated[0].any()
  # Reply rows follow the upload's secret order; the client puts them back.
  order = secret.upload_order(key, 20)
  np.testing.assert_array_equal(federated[1 + order], ok.vectors)
  other = Upload(client="food", vectors=_vectors(20, 8, 9)).digest()
  for bad, match in [
      (Reply(client="food", vectors=_vectors(19, 8), answers=up.digest()), "holds 19"),
      (Reply(client="food", vectors=_vectors(21, 8), answers=up.digest()), "holds 21"),
      (Reply(client="food", vectors=_vectors(20, 7), answers=up.digest()), "dim 7"),
      (Reply(client="kitchen", vectors=_vectors(20, 8), answers=up.digest()), "addressed"),
      (Reply(client="food", vectors=_vectors(20, 8), answers=other), "different upload"),
  ]:
    with pytest.raises(UserError, match=match):
      client.accept_reply(bad, sent, key)


def test_an_upload_holds_one_vector_per_catalogue_item_and_nothing_else(tmp_path):
  n, d = 33, 6
  e = np.concatenate([np.zeros((1, d), np.float32), _vectors(n, d)])
  up, _ = client.make_upload("food", e, client.PrivacyConfig(noise_scale=0.1, tile=8),
                             bytes(32))
  assert {f.name for f in dataclasses.fields(Upload)} == {"client", "vectors"}
  assert up.vectors.shape == (n, d)
  data = messages.encode(up)
  end = data.index(b"\n", len(messages.MAGIC))
  header = json.loads(data[len(messages.MAGIC) : end])
  assert set(header) == {"format", "version", "kind", "client", "count", "dim", "dtype", "sha256"}
  assert (header["count"], header["dim"]) == (n, d)
  assert len(data) == end + 1 + n * d * 4  # the payload is exactly N × d float32
  # No raw vector e_i crosses: every uploaded row differs from every raw row.
  assert np.min(np.abs(up.vectors[:, None, :] - e[None, 1:, :]).max(-1)) > 1e-3


def test_server_cannot_be_handed_user_data():
  sig = inspect.signature(server.serve)
  assert list(sig.parameters) == ["uploads", "config"]
  hints = typing.get_type_hints(server.serve)
  assert typing.get_args(hints["uploads"]) == (Upload,) and hints["config"] is server.ServerConfig
  assert {f.name for f in dataclasses.fields(server.ServerConfig)} == {
      "num_clusters", "tol", "max_iter", "greedy_trials", "seed", "chunk"}
  split = DomainSplit(
      name="food", item_ids=["", "a"], titles=["", "t"], shown_titles=["", "t"],
      texts=["", "t"], user_ids=["u"],
      seqs=np.ones((1, 3), np.int32), lengths=np.array([3], np.int32),
      valid_candidates=np.ones((1, 2), np.int32), valid_target_pos=np.zeros(1, np.int32),
      test_candidates=np.ones((1, 2), np.int32), test_target_pos=np.zeros(1, np.int32),
  )
  up = Upload(client="food", vectors=_vectors(5, 4))
  cfg = server.ServerConfig(num_clusters=2)
  for bad in ([split], [up, split], [split.seqs], [{"client": "food", "vectors": up.vectors}]):
    with pytest.raises(TypeError, match="Upload messages only"):
      server.serve(bad, cfg)
  with pytest.raises(TypeError, match="ServerConfig"):
    server.serve([up], {"num_clusters": 2, "sequences": split.seqs})
  with pytest.raises(TypeError, match="float32"):
    Upload(client="food", vectors=split.seqs)  # int sequences are not vectors


def test_server_returns_each_client_its_own_rows():
  rng = np.random.default_rng(0)
  ups = [Upload(client=f"c{i}", vectors=(rng.standard_normal((40 + 7 * i, 5)) + 3 * i)
                .astype(np.float32)) for i in range(3)]
  cfg = server.ServerConfig(num_clusters=6, max_iter=50)
  replies, report = server.serve(ups, cfg)
  x = np.concatenate([u.vectors for u in ups])
  centres = np.unique(np.concatenate([r.vectors for r in replies]), axis=0)
  assert len(centres) <= 6
  for up, reply in zip(ups, replies):
    assert reply.client == up.client and reply.answers == up.digest()
    assert reply.vectors.shape == up.vectors.shape
    d2 = ((up.vectors[:, None] - centres[None]) ** 2).sum(-1)
    np.testing.assert_allclose(reply.vectors, centres[d2.argmin(1)], atol=1e-6)
  assert report["num_items"] == len(x) and sum(report["sizes"]) == len(x)
  assert set(report["clients"]) == {"c0", "c1", "c2"}
  # The answer does not depend on the order the uploads arrive in.
  swapped, _ = server.serve(ups[::-1], cfg)
  for a, b in zip(replies, swapped[::-1]):
    np.testing.assert_array_equal(a.vectors, b.vectors)


def test_bridge_share():
  rng = np.random.default_rng(1)
  base = rng.standard_normal((30, 4)).astype(np.float32)
  same = [Upload(client="a", vectors=base), Upload(client="b", vectors=base.copy())]
  _, report = server.serve(same, server.ServerConfig(num_clusters=4))
  assert report["bridge_share"] == 1.0  # identical catalogues: every cluster is shared
  apart = [Upload(client="a", vectors=base + 100), Upload(client="b", vectors=base - 100)]
  _, report = server.serve(apart, server.ServerConfig(num_clusters=4))
  assert report["bridges"] == 0 and report["bridge_share"] == 0.0
