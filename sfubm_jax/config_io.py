"""The resolved config of a run, saved in the workdir (`DIR/config.json`).

The pipeline saves it each time a stage finishes, so a run whose first stage fails
leaves no config behind. What a changed config reruns is decided per stage from the
fields it reads (`fingerprint`), not by comparing whole configs.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections

from sfubm_jax import io_utils

CONFIG_FILE = "config.json"


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe dict (tuples become lists) of the config."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def save_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  io_utils.write_json(pathlib.Path(workdir) / CONFIG_FILE, to_dict(config))


def saved_config(workdir: pathlib.Path) -> dict | None:
  path = pathlib.Path(workdir) / CONFIG_FILE
  return io_utils.read_json(path) if path.exists() else None
