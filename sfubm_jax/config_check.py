"""Checks a config's choice fields before any stage runs.

A misspelt choice (`--config.llm.valid_rule=exactly`) would otherwise surface only in the
stage that reads it, possibly hours into a run. `check` reads each field's allowed values
from the module that implements it and reports every bad field in one error.
"""

from __future__ import annotations

import ml_collections

from sfubm_jax.errors import UserError


def choices() -> dict[str, tuple[str, ...]]:
  """Allowed values of each choice field, keyed by its dotted config path."""
  from sfubm_jax.federation.perturb import REPLACE_WITH
  from sfubm_jax.llm.answers import RULES
  from sfubm_jax.llm.stage2 import RANK_REDUCE
  from sfubm_jax.llm.train_stage import TRAIN_TARGETS
  from sfubm_jax.llm.variants import VARIANTS
  from sfubm_jax.metrics import METRICS
  from sfubm_jax.models import fkd, projector
  from sfubm_jax.models.causal_lm.backbone import FAMILIES

  return {
      "privacy.replace_with": REPLACE_WITH,
      "fkd.activation": tuple(fkd.ACTIVATIONS),
      "fkd.teacher": fkd.TEACHERS,
      "fkd.rec_positions": fkd.REC_POSITIONS,
      "fkd.select_metric": METRICS,
      "sasrec.select_metric": METRICS,
      "gru4rec.select_metric": METRICS,
      "llm.user_activation": tuple(projector.ACTIVATIONS),
      "llm.item_activation": tuple(projector.ACTIVATIONS),
      "llm.train_targets": TRAIN_TARGETS,
      "llm.family": FAMILIES,
      "llm.valid_rule": RULES,
      "llm.rank_reduce": RANK_REDUCE,
      "llm.variants[]": tuple(VARIANTS),
  }


def _get(config: ml_collections.ConfigDict, path: str):
  node = config
  for key in path.split("."):
    if key not in node:
      return None
    node = node[key]
  return node


def check(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming every choice field whose value is not allowed."""
  bad = []
  for path, allowed in choices().items():
    many = path.endswith("[]")
    value = _get(config, path.removesuffix("[]"))
    if value is None:
      continue
    for v in (value if many else [value]):
      if v not in allowed:
        bad.append(f"config.{path.removesuffix('[]')}: {v!r} is not one of {list(allowed)}")
  if bad:
    raise UserError("; ".join(bad))
