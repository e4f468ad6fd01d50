"""The pipeline: named stages run in order, each under `DIR/<stage>/`.

A stage is a function `run(config, workdir) -> None` that writes only under
`workdir/<stage>/` (and merges its metrics into `workdir/results.json`). When it
returns, the pipeline writes `workdir/<stage>/COMPLETE`; a stage whose marker exists is
skipped on rerun. An interrupted stage has no marker and is run again: it resumes from
its own caches and Orbax checkpoints.
"""

from __future__ import annotations

import importlib
import pathlib
import time
from collections.abc import Callable, Sequence

import ml_collections
from absl import logging

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

# Stage name -> "module:function", in pipeline order.
STAGES: dict[str, str] = {
    "data": "sfubm_jax.data.stage:run",
    "federate": "sfubm_jax.federation.stage:run",
    "pretrain": "sfubm_jax.training.pretrain_stage:run",
    "fkd": "sfubm_jax.training.fkd_stage:run",
    "llm": "sfubm_jax.llm.train_stage:run",
    "eval": "sfubm_jax.llm.eval_stage:run",
}

COMPLETE = "COMPLETE"

StageFn = Callable[[ml_collections.ConfigDict, pathlib.Path], None]


def stage_function(name: str) -> StageFn | None:
  """The stage's entry function, or None when this checkout does not have it yet."""
  module_name, fn_name = STAGES[name].split(":")
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name == module_name:
      return None
    raise
  return getattr(module, fn_name)


def available_stages() -> list[str]:
  return [name for name in STAGES if stage_function(name) is not None]


def parse_stages(spec: str | None) -> list[str]:
  """'data,federate' -> ['data', 'federate'] in pipeline order; None/'' -> all available."""
  if not spec:
    return available_stages()
  names = [s.strip() for s in spec.split(",") if s.strip()]
  unknown = [n for n in names if n not in STAGES]
  if unknown:
    raise UserError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
  missing = [n for n in names if stage_function(n) is None]
  if missing:
    raise UserError(f"stage(s) {missing} are not implemented in this version")
  return [n for n in STAGES if n in names]


def is_complete(workdir: pathlib.Path, stage: str) -> bool:
  return (workdir / stage / COMPLETE).exists()


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, stages: Sequence[str]) -> None:
  """Runs `stages` in order, skipping those already complete; then writes the report.

  `DIR/report.md` summarises every stage (wall times included), so it is written here,
  once the eval stage is complete, rather than by a stage.
  """
  ran = False
  for name in stages:
    if is_complete(workdir, name):
      logging.info("stage %s: complete, skipped (%s)", name, workdir / name / COMPLETE)
      continue
    ran = True
    logging.info("stage %s: running", name)
    start = time.time()
    stage_dir = workdir / name
    created = not stage_dir.exists()
    stage_dir.mkdir(parents=True, exist_ok=True)
    try:
      stage_function(name)(config, workdir)
    except BaseException:
      if created and not any(stage_dir.iterdir()):
        stage_dir.rmdir()  # leave no empty output folder behind a failed stage
      raise
    elapsed = time.time() - start
    io_utils.write_json(workdir / name / COMPLETE, {"stage": name, "seconds": round(elapsed, 2)})
    logging.info("stage %s: done in %.1fs", name, elapsed)
  if "eval" in stages and (ran or not (workdir / "report.md").exists()):
    from sfubm_jax import report  # matplotlib is only needed here

    logging.info("report: %s", report.write_report(config, workdir))
