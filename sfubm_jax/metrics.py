"""Ranking metrics over a fixed candidate list per user (SPEC §1, §5; paper Table 2).

Every evaluated user has C stored candidates (the target plus 19 negatives). A model
gives each candidate a score; the target's rank is the number of other candidates
scoring at least as high, so a tie with the target counts against it (pessimistic: a
constant scorer gets Hit@1 = 0, not 1).
"""

from __future__ import annotations

import numpy as np

METRICS = ("hit@1", "hr@5", "ndcg@5", "ndcg@10")


def target_ranks(scores: np.ndarray, target_pos: np.ndarray) -> np.ndarray:
  """0-based rank of each user's target among its candidates, ties counted against it.

  scores [U, C] float, target_pos [U] int -> ranks [U] int64.
  """
  scores = np.asarray(scores, dtype=np.float64)
  target_pos = np.asarray(target_pos, dtype=np.int64)
  if scores.ndim != 2 or target_pos.shape != scores.shape[:1]:
    raise ValueError(f"scores [U, C] and target_pos [U] expected, got {scores.shape}, "
                     f"{target_pos.shape}")
  if not np.isfinite(scores).all():
    raise ValueError("scores hold NaN or infinity: the model diverged")
  target = np.take_along_axis(scores, target_pos[:, None], axis=1)  # [U, 1]
  # Candidates other than the target scoring >= the target's score.
  return (scores >= target).sum(axis=1) - 1


def ranking_metrics(scores: np.ndarray, target_pos: np.ndarray) -> dict[str, float]:
  """hit@1 (= HR@1), hr@5, ndcg@5, ndcg@10 averaged over users (numpy).

  scores [U, C], target_pos [U]: where the target sits in each candidate list.
  """
  ranks = target_ranks(scores, target_pos)  # [U]
  gain = 1.0 / np.log2(ranks + 2.0)  # [U] DCG of the single relevant item
  return {
      "hit@1": float(np.mean(ranks < 1)),
      "hr@5": float(np.mean(ranks < 5)),
      "ndcg@5": float(np.mean(np.where(ranks < 5, gain, 0.0))),
      "ndcg@10": float(np.mean(np.where(ranks < 10, gain, 0.0))),
  }
