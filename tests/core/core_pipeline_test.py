"""Pipeline: stage order, unknown stages, skip-when-complete."""

import pytest

from sfubm_jax import pipeline
from sfubm_jax.errors import UserError


def test_parse_stages_orders_and_rejects():
  with pytest.raises(UserError, match="unknown stage"):
    pipeline.parse_stages("data,nosuch")


def test_run_skips_complete_stages(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(pipeline, "stage_function", lambda name: lambda c, w: calls.append(name))
  pipeline.run(None, tmp_path, ["data", "federate"])
  pipeline.run(None, tmp_path, ["data", "federate"])
  assert calls == ["data", "federate"]
  assert (tmp_path / "data" / pipeline.COMPLETE).exists()


def test_failed_stage_leaves_no_marker(tmp_path, monkeypatch):
  def boom(config, workdir):
    raise RuntimeError("crash")

  monkeypatch.setattr(pipeline, "stage_function", lambda name: boom)
  with pytest.raises(RuntimeError):
    pipeline.run(None, tmp_path, ["data"])
  assert not (tmp_path / "data" / pipeline.COMPLETE).exists()
