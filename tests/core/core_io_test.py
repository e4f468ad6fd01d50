"""Atomic writes: a failed write leaves the old file and no temp files."""

import numpy as np
import pytest

from sfubm_jax import io_utils


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
  path = tmp_path / "a" / "f.json"
  io_utils.write_json(path, {"b": 1, "a": [1, 2]})
  io_utils.write_json(path, {"a": 2})
  assert io_utils.read_json(path) == {"a": 2}
  assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]


def test_failed_serialisation_keeps_old_file(tmp_path):
  path = tmp_path / "f.json"
  io_utils.write_json(path, {"ok": True})
  with pytest.raises(TypeError):
    io_utils.write_json(path, {"bad": object()})
  assert io_utils.read_json(path) == {"ok": True}
  assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_npz_round_trip_is_byte_stable(tmp_path):
  arrays = {"x": np.arange(12, dtype=np.int32).reshape(3, 4), "y": np.ones(2, np.float32)}
  io_utils.save_npz(tmp_path / "a.npz", **arrays)
  io_utils.save_npz(tmp_path / "b.npz", **arrays)
  assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
  back = io_utils.load_npz(tmp_path / "a.npz")
  np.testing.assert_array_equal(back["x"], arrays["x"])


def test_atomic_directory_discards_on_error(tmp_path):
  target = tmp_path / "out"
  with pytest.raises(RuntimeError):
    with io_utils.atomic_directory(target) as tmp:
      (tmp / "half.txt").write_text("x")
      raise RuntimeError("crash")
  assert not target.exists()
  assert list(tmp_path.iterdir()) == []
  with io_utils.atomic_directory(target) as tmp:
    (tmp / "full.txt").write_text("y")
  assert (target / "full.txt").read_text() == "y"
