"""Ranking metrics against hand-computed values."""

import numpy as np
import pytest

from sfubm_jax.metrics import ranking_metrics, target_ranks


def test_hand_values():
  # Four users, five candidates each; the target's 0-based rank is 0, 2, 4 and 7 (C=8).
  scores = np.array([
      [0.9, 0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0],  # target 0 best -> rank 0
      [0.5, 0.9, 0.8, 0.1, 0.0, 0.0, 0.0, 0.0],  # target 0 third -> rank 2
      [0.1, 0.9, 0.8, 0.7, 0.6, 0.0, 0.0, 0.0],  # target 0 fifth -> rank 4
      [0.1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],  # target 0 last -> rank 7
  ])
  target_pos = np.zeros(4, np.int64)
  np.testing.assert_array_equal(target_ranks(scores, target_pos), [0, 2, 4, 7])
  m = ranking_metrics(scores, target_pos)
  assert m["hit@1"] == pytest.approx(0.25)
  assert m["hr@5"] == pytest.approx(0.75)
  assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(4) + 1 / np.log2(6)) / 4)
  assert m["ndcg@10"] == pytest.approx((1 + 0.5 + 1 / np.log2(6) + 1 / np.log2(9)) / 4)


def test_ties_count_against_the_target():
  scores = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 2.0]])
  target_pos = np.array([1, 2])
  np.testing.assert_array_equal(target_ranks(scores, target_pos), [2, 1])
  assert ranking_metrics(scores, target_pos)["hit@1"] == 0.0


def test_target_position_is_respected():
  scores = np.array([[0.1, 0.2, 0.9, 0.3]])
  assert ranking_metrics(scores, np.array([2]))["hit@1"] == 1.0
  assert ranking_metrics(scores, np.array([0]))["hit@1"] == 0.0


def test_nan_scores_are_an_error():
  with pytest.raises(ValueError, match="NaN"):
    ranking_metrics(np.array([[np.nan, 1.0]]), np.array([0]))
