"""Generated answers → candidate choice → Valid ratio and Hit@1 (SPEC §7).

Normalisation: cut at the first newline, Unicode NFKC, lower case, quote characters
removed, surrounding punctuation stripped, whitespace collapsed. A generation is valid
when it matches exactly one candidate title: by equality of the normalised strings
("exact", the project's choice) or by containment of the normalised title in the
normalised output ("contains", LLaRA's looser rule). Hit@1 counts valid answers that
name the target, over all users (the paper's figure) and over valid answers only
(LLaRA's `hit@1_valid`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sfubm_jax.data.titles import normalize

RULES = ("exact", "contains")
__all__ = ["RULES", "choose", "generation_metrics", "normalize"]


def choose(output: str, candidate_titles: Sequence[str], rule: str = "exact") -> int:
  """Index of the one candidate the output names, or -1 (invalid: none or several)."""
  if rule not in RULES:
    raise ValueError(f"valid rule {rule!r} not in {RULES}")
  out = normalize(output)
  titles = [normalize(t) for t in candidate_titles]
  if rule == "exact":
    hits = [k for k, t in enumerate(titles) if t == out and out]
  else:
    hits = [k for k, t in enumerate(titles) if t and t in out]
  return hits[0] if len(hits) == 1 else -1


def generation_metrics(choices: np.ndarray, target_pos: np.ndarray) -> dict[str, float]:
  """choices [U] (-1 invalid), target_pos [U] -> valid_ratio, hit@1, hit@1_valid."""
  choices = np.asarray(choices)
  valid = choices >= 0
  hits = valid & (choices == np.asarray(target_pos))
  n_valid = int(valid.sum())
  return {
      "valid_ratio": float(valid.mean()) if len(valid) else 0.0,
      "hit@1": float(hits.mean()) if len(hits) else 0.0,
      "hit@1_valid": float(hits.sum() / n_valid) if n_valid else 0.0,
      "num_users": float(len(valid)),
  }
