"""Training examples: history/target from the train split, seeded never-touched negatives."""

import numpy as np

from sfubm_jax.data.split import DomainSplit
from sfubm_jax.llm.context import DomainContext
from sfubm_jax.llm.train_stage import epoch_order, training_examples


def _split():
  rng = np.random.default_rng(0)
  n, users, length = 60, 12, 6
  seqs = np.zeros((users, length), np.int32)
  lengths = rng.integers(3, length + 1, size=users).astype(np.int32)
  for u, m in enumerate(lengths):
    seqs[u, length - m:] = rng.choice(np.arange(1, n + 1), m, replace=False)
  titles = [""] + [f"item {i % 50}" for i in range(1, n + 1)]  # items i, i+50 share a title
  cands = np.zeros((users, 20), np.int32)
  return DomainSplit("food", [""] + [str(i) for i in range(1, n + 1)], titles, titles,
                     [f"u{u}" for u in range(users)], seqs, lengths, cands,
                     np.zeros(users, np.int32), cands, np.zeros(users, np.int32))


def _ctx(split):
  return DomainContext(None, None, "food", split, None, None, None, "full", None,
                       [[]] * len(split.titles), split.titles)


def test_examples_targets_negatives_and_seed():
  split = _split()
  ex = training_examples(_ctx(split), 19, seed=3)
  for u in range(split.num_users):
    real = split.seqs[u][split.seqs[u] > 0]
    assert ex["target"][u] == real[-3]  # the item before the validation target
    np.testing.assert_array_equal(ex["history"][u][ex["history"][u] > 0], real[:-3])
    cands = ex["candidates"][u]
    assert cands[ex["target_pos"][u]] == ex["target"][u]
    negatives = np.delete(cands, ex["target_pos"][u])
    assert len(negatives) == 19 and not set(negatives) & set(real.tolist())
    assert len({split.titles[c] for c in cands}) == 20  # distinct titles
  again = training_examples(_ctx(split), 19, seed=3)
  np.testing.assert_array_equal(again["candidates"], ex["candidates"])
  other = training_examples(_ctx(split), 19, seed=4)
  assert not np.array_equal(other["candidates"], ex["candidates"])
  # Target positions are spread, not always first.
  assert len(set(ex["target_pos"].tolist())) > 3


def test_epoch_order_covers_every_example_once_with_weight():
  idx, w = epoch_order(10, 4, seed=0, epoch=1)
  assert len(idx) == 12 and sorted(idx[w > 0].tolist()) == list(range(10))
  assert w.sum() == 10
  idx2, _ = epoch_order(10, 4, seed=0, epoch=2)
  assert not np.array_equal(idx, idx2)
