"""`pop`: the popularity floor baseline (SPEC §5).

A candidate's score is how often it occurs in the training histories (every training
item of every user: never a validation or test target). Equal counts are broken by a
seeded uniform draw, so a tie costs the target what random ordering would (the ranking
metrics count a tie against the target, which would make `pop` weaker than it is).
"""

from __future__ import annotations

import numpy as np

from sfubm_jax.data.split import DomainSplit
from sfubm_jax.metrics import ranking_metrics


def train_counts(train_hist: np.ndarray, num_items: int) -> np.ndarray:
  """[N+1] int64 occurrences of each item in the training histories [U, L] (row 0 = 0)."""
  counts = np.bincount(np.asarray(train_hist).ravel(), minlength=num_items + 1)
  counts[0] = 0
  return counts.astype(np.int64)


def pop_scores(counts: np.ndarray, cands: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """[U, C] counts of the candidates plus a tie-breaking draw in [0, 0.5)."""
  return counts[cands].astype(np.float64) + 0.5 * rng.random(cands.shape)


def evaluate_pop(split: DomainSplit, which: str, seed: int,
                 users: np.ndarray | None = None) -> dict[str, float]:
  """Ranking metrics of `pop` on split `which` ("valid" or "test"), over the rows `users`
  (all when None; the same tie-breaking draws as the evaluation over all users)."""
  counts = train_counts(split.history("train")[0], split.num_items)
  cands, target_pos = split.candidates(which)
  rng = np.random.default_rng([seed, {"valid": 0, "test": 1}[which]])
  scores = pop_scores(counts, cands, rng)
  rows = slice(None) if users is None else users
  return ranking_metrics(scores[rows], target_pos[rows])
