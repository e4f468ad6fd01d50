"""The pipeline: named stages run in order, each under `DIR/<stage>/`.

A stage is a function `run(config, workdir) -> None` that writes only under
`workdir/<stage>/` (and merges its metrics into `workdir/results.json`). When it
returns, the pipeline writes `workdir/<stage>/COMPLETE` holding the stage's fingerprint
(the config fields it read, `fingerprint.READS`) and saves `DIR/config.json`. On a rerun
`fingerprint.plan` decides per stage: skip it (finished, fields unchanged), run it (never
finished: it resumes from its own caches and Orbax checkpoints), keep-and-rerun it (only
additive fields changed: a new variant, another scoring rule) or redo it (its fields or
its inputs changed: its folder and every later stage's are cleared first, content-keyed
caches excepted). The terminal shows a banner per stage and the plan's reasons.
"""

from __future__ import annotations

import importlib
import pathlib
import shutil
import time
from collections.abc import Callable, Sequence

import ml_collections
from absl import logging

from sfubm_jax import config_check, config_io, console, fingerprint, io_utils, summary
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
# What each stage does, for its banner.
TITLES = {
    "data": "read, filter, sample and split every domain (SPEC §1)",
    "federate": "encode item texts, perturb, upload, k-means++ on the server (SPEC §2–4)",
    "pretrain": "SASRec and GRU4Rec per domain (SPEC §5)",
    "fkd": "fact-counter knowledge distillation, SASRec frozen (SPEC §6)",
    "llm": "projectors and soft prompts into the LLM (SPEC §7)",
    "eval": "greedy decoding, Valid, Hit@1, likelihood ranking (SPEC §7)",
}

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


def saved_fingerprints(workdir: pathlib.Path) -> dict[str, dict | None]:
  """Each finished stage's recorded fingerprint (None for a stage not finished).

  Markers written before fingerprints existed are read against `DIR/config.json`.
  """
  saved_config = config_io.saved_config(workdir) or {}
  out = {}
  for name in STAGES:
    marker = workdir / name / COMPLETE
    if not marker.exists():
      out[name] = None
      continue
    record = io_utils.read_json(marker).get("reads")
    out[name] = record if record is not None else fingerprint.reads(name, saved_config)
  return out


def make_plan(config: ml_collections.ConfigDict, workdir: pathlib.Path,
              stages: Sequence[str]) -> list[fingerprint.Step]:
  """The plan for the selected `stages`; an unselected stage that must rerun first is an error."""
  saved = saved_fingerprints(workdir)
  # Stages neither selected nor finished (`--stages=data,llm,eval`) take no part.
  considered = [s for s in STAGES if s in stages or saved[s] is not None]
  steps = fingerprint.plan(considered, config_io.to_dict(config), saved)
  last = max((considered.index(s) for s in stages), default=-1)
  for i, step in enumerate(steps):
    if step.stage not in stages and step.action in ("keep", "redo") and i < last:
      raise UserError(f"stage {step.stage} must rerun first ({step.reason}); add it to "
                      "--stages or leave --stages out")
  return [s for s in steps if s.stage in stages]


def _clear(workdir: pathlib.Path, stage: str) -> None:
  """Deletes DIR/<stage>/ except its content-keyed caches."""
  folder = workdir / stage
  if not folder.exists():
    return
  keep = fingerprint.KEEP_ON_REDO.get(stage, ())
  for entry in folder.iterdir():
    if entry.name in keep:
      continue
    if entry.is_dir():
      shutil.rmtree(entry)
    else:
      entry.unlink()


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path, stages: Sequence[str]) -> None:
  """Runs `stages` in order as `make_plan` says; then writes the report.

  `DIR/report.md` summarises every stage (wall times included), so it is written here,
  once the eval stage is complete, rather than by a stage.
  """
  steps = make_plan(config, workdir, stages)
  reruns = [s for s in steps if s.action in ("keep", "redo")]
  for s in reruns:
    what = "rerun" if s.action == "keep" else "redo from scratch"
    console.say(f"{s.stage}: {what}, {s.reason}")
  first_redo = next((s.stage for s in steps if s.action == "redo"), None)
  if first_redo is not None:  # a redone stage's outputs invalidate every later stage's
    for name in list(STAGES)[list(STAGES).index(first_redo):]:
      _clear(workdir, name)
  ran = False
  for index, step in enumerate(steps, 1):
    name = step.stage
    if step.action == "skip":
      logging.info("stage %s: complete, skipped (%s)", name, workdir / name / COMPLETE)
      console.say(f"── [{index}/{len(steps)}] {name}: finished earlier, skipped")
      continue
    if name != "data":
      config_check.check_against_data(config, workdir)
    ran = True
    console.banner(index, len(steps), name, TITLES[name])
    logging.info("stage %s: running (%s, %s)", name, step.action, step.reason)
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
    io_utils.write_json(workdir / name / COMPLETE, {
        "stage": name, "seconds": round(elapsed, 2),
        "reads": fingerprint.reads(name, config_io.to_dict(config))})
    config_io.save_config(config, workdir)
    logging.info("stage %s: done in %.1fs", name, elapsed)
    for line in summary.after_stage(name, config, workdir):
      console.say(line)
    console.say(f"   {name} done in {elapsed:.0f} s")
  if "eval" in stages and (ran or not (workdir / "report.md").exists()):
    from sfubm_jax import report  # matplotlib is only needed here

    path = report.write_report(config, workdir)
    logging.info("report: %s", path)
    for line in summary.final(config, workdir):
      console.say(line)
    console.say(f"report: {path}")
