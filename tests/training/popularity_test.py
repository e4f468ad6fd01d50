"""`pop` against a hand-computed ranking and the count of training occurrences."""

import numpy as np
from seqrec_synthetic import synthetic_split

from sfubm_jax.metrics import ranking_metrics
from sfubm_jax.training import popularity


def test_counts_only_training_items():
  split = synthetic_split(num_users=20, num_items=40, seed=1)
  counts = popularity.train_counts(split.history("train")[0], split.num_items)
  want = np.zeros(41, np.int64)
  for row, n in zip(split.seqs, split.lengths):
    for item in row[len(row) - n:][:-2]:  # without the validation and test targets
      want[item] += 1
  np.testing.assert_array_equal(counts, want)


def test_scores_rank_by_count_and_break_ties_at_random():
  counts = np.array([0, 5, 3, 3, 0])
  cands = np.array([[1, 2, 3, 4]] * 4000)
  scores = popularity.pop_scores(counts, cands, np.random.default_rng(0))
  assert np.all(np.argmax(scores, 1) == 0)  # the most frequent item always first
  assert ranking_metrics(scores, np.full(4000, 1))["hit@1"] == 0.0  # item 1 beats item 2
  tied = ranking_metrics(scores[:, 1:], np.zeros(4000, int))["hit@1"]  # 2 ties with 3
  assert 0.45 < tied < 0.55
