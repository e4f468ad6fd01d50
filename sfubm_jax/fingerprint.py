"""Which stages a rerun must redo: each stage's fingerprint is the config fields it reads.

`READS[stage]` lists the config paths (sections or fields) a stage's outputs depend on;
the values of those fields are saved in the stage's COMPLETE marker. On a rerun, a stage
whose fields changed is redone, and so is every stage after it (each stage reads the
outputs of the ones before). Fields in `ADDITIVE[stage]` only add work (another variant,
a different scoring rule over saved generations): a change there reruns the stage
without discarding what it already finished. `RUNTIME` fields (checkpoint cadence,
logging, device layout, transport) never trigger a rerun.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

# Stage -> the config paths it reads (a path covers every field under it).
READS: dict[str, tuple[str, ...]] = {
    "data": ("domains", "data"),
    "federate": ("domains", "text_encoder", "privacy", "server"),
    "pretrain": ("sasrec", "gru4rec"),
    "fkd": ("fkd",),
    "llm": ("llm",),
    "eval": ("llm",),
}
# Stage -> paths under READS it does not depend on (read by a later stage only).
IGNORES: dict[str, tuple[str, ...]] = {
    "llm": ("llm.valid_rule", "llm.rank_reduce", "llm.max_new_tokens", "llm.eval_batch_size",
            "llm.eval_users"),
}
# Stage -> paths whose change reruns the stage but keeps its finished parts.
ADDITIVE: dict[str, tuple[str, ...]] = {
    "fkd": ("fkd.variants",),
    "llm": ("llm.variants",),
    "eval": ("llm.variants", "llm.valid_rule"),
}
# Never part of a fingerprint: how a run is carried out, not what it computes.
RUNTIME = ("runtime", "mesh", "federation", "text_encoder.batch_size", "text_encoder.device",
           "llm.eval_memory_gb", "pair", "variant")
# Fields added after workdirs were written, with the value that reproduces the behaviour
# from before they existed: a record without one compares as if it held that value.
ADDED_DEFAULTS: dict[str, Any] = {"sasrec.patience": 0, "gru4rec.patience": 0,
                                  "fkd.patience": 0}
# Stage -> entries of DIR/<stage>/ that survive a redo: caches keyed by their content.
KEEP_ON_REDO: dict[str, tuple[str, ...]] = {"federate": ("text_cache",)}


def _under(path: str, prefixes: Sequence[str]) -> bool:
  return any(path == p or path.startswith(p + ".") for p in prefixes)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    path = f"{prefix}.{k}" if prefix else k
    if isinstance(v, Mapping):
      out.update(flatten(v, path))
    else:
      out[path] = v
  return out


def reads(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
  """The stage's fingerprint: {dotted path: value} of every field it reads."""
  return {p: v for p, v in flatten(config).items()
          if _under(p, READS[stage]) and not _under(p, IGNORES.get(stage, ()))
          and not _under(p, RUNTIME)}


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
  """Paths whose values differ between two fingerprints (`old` may predate a field of
  ADDED_DEFAULTS)."""
  return sorted(p for p in set(old) | set(new)
                if old.get(p, ADDED_DEFAULTS.get(p)) != new.get(p, ADDED_DEFAULTS.get(p)))


@dataclasses.dataclass(frozen=True)
class Step:
  """What the run does with one stage: skip, run (fresh or resume), keep or redo."""

  stage: str
  action: str  # "skip" | "run" | "keep" (rerun, keep finished parts) | "redo" (start over)
  reason: str = ""


def plan(stages: Sequence[str], new_config: Mapping[str, Any],
         saved: Mapping[str, Mapping[str, Any] | None]) -> list[Step]:
  """The step of each stage, in order; `saved[stage]` is its recorded fingerprint or None.

  A stage without a record runs (it was never finished). A finished stage is redone when
  a field it reads changed outside ADDITIVE, or when an earlier stage is redone or runs;
  it is kept-and-rerun when only ADDITIVE fields changed, or an earlier stage was.
  """
  steps: list[Step] = []
  rebuilt = added = None  # the first earlier stage that runs/redoes, that keeps
  for stage in stages:
    record = saved.get(stage)
    if record is None:
      step = Step(stage, "run", "not finished before")
    else:
      changed = changes(record, reads(stage, new_config))
      hard = [p for p in changed if not _under(p, ADDITIVE.get(stage, ()))]
      if rebuilt is not None:
        step = Step(stage, "redo", f"its input from {rebuilt} is rebuilt")
      elif hard:
        step = Step(stage, "redo", "changed " + describe(hard, record, new_config))
      elif changed:
        step = Step(stage, "keep", "changed " + describe(changed, record, new_config))
      elif added is not None:
        step = Step(stage, "keep", f"{added} adds outputs")
      else:
        step = Step(stage, "skip", "finished, its fields unchanged")
    steps.append(step)
    if step.action in ("run", "redo") and rebuilt is None:
      rebuilt = stage
    if step.action == "keep" and added is None:
      added = stage
  return steps


def describe(paths: Sequence[str], old: Mapping[str, Any], new_config: Mapping[str, Any],
             limit: int = 3) -> str:
  new = flatten(new_config)
  parts = [f"{p} {old.get(p)!r} -> {new.get(p)!r}" for p in paths[:limit]]
  return ", ".join(parts) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
