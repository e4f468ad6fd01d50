"""The resolved config of a run, saved in the workdir and checked on rerun."""

from __future__ import annotations

import json
import pathlib

import ml_collections

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

CONFIG_FILE = "config.json"


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A JSON-safe dict (tuples become lists) of the config."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _diff(a, b, prefix=""):
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      yield from _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
  elif a != b:
    yield f"{prefix}: {a!r} -> {b!r}"


def bind_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """Saves the resolved config in `workdir`, or checks it equals the one saved there.

  A workdir holds one experiment: resuming with a different config would mix outputs
  of two experiments, so that is an error listing the differing fields. Fields under
  `runtime` (logging, checkpoint cadence) may change between reruns.
  """
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / CONFIG_FILE
  current = to_dict(config)
  if path.exists():
    saved = io_utils.read_json(path)
    diffs = [
        d
        for d in _diff({k: v for k, v in saved.items() if k != "runtime"},
                       {k: v for k, v in current.items() if k != "runtime"})
    ]
    if diffs:
      raise UserError(
          f"{workdir} was created with a different config ({'; '.join(diffs[:5])}"
          f"{'; ...' if len(diffs) > 5 else ''}); use a new --workdir or the saved config "
          f"{path}"
      )
  io_utils.write_json(path, current)
