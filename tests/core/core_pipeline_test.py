"""Pipeline: stage order, unknown stages, skip-when-complete."""

import json

import pytest
from conftest import load_config

from sfubm_jax import pipeline
from sfubm_jax.errors import UserError


def test_parse_stages_orders_and_rejects():
  with pytest.raises(UserError, match="unknown stage"):
    pipeline.parse_stages("data,nosuch")


def test_run_skips_complete_stages(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(pipeline, "stage_function", lambda name: lambda c, w: calls.append(name))
  config = load_config("tiny")
  pipeline.run(config, tmp_path, ["data", "federate"])
  pipeline.run(config, tmp_path, ["data", "federate"])
  assert calls == ["data", "federate"]
  marker = json.loads((tmp_path / "data" / pipeline.COMPLETE).read_text())
  assert marker["reads"]["data.seed"] == 0 and "server.num_clusters" not in marker["reads"]
  assert json.loads((tmp_path / "config.json").read_text())["pair"] == "food_kitchen"
  with config.unlocked():
    config.server.num_clusters = 6  # read by federate only
  pipeline.run(config, tmp_path, ["data", "federate"])
  assert calls == ["data", "federate", "federate"]


def test_failed_stage_leaves_no_marker(tmp_path, monkeypatch):
  def boom(config, workdir):
    raise RuntimeError("crash")

  monkeypatch.setattr(pipeline, "stage_function", lambda name: boom)
  with pytest.raises(RuntimeError):
    pipeline.run(load_config("tiny"), tmp_path, ["data"])
  assert not (tmp_path / "data" / pipeline.COMPLETE).exists()
  assert not (tmp_path / "config.json").exists()  # a failed first stage saves no config
