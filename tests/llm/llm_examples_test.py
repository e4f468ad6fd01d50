"""Training examples: history/target from the train split, seeded never-touched negatives."""

import numpy as np
import pytest

from sfubm_jax.data.split import DomainSplit
from sfubm_jax.errors import UserError
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
  return DomainSplit("food", [""] + [str(i) for i in range(1, n + 1)], titles, titles, titles,
                     [f"u{u}" for u in range(users)], seqs, lengths, cands,
                     np.zeros(users, np.int32), cands, np.zeros(users, np.int32))


def _ctx(split):
  return DomainContext(None, None, "food", split, None, None, None, "full", None,
                       [[]] * len(split.titles), split.titles)


def test_examples_targets_negatives_and_seed():
  split = _split()
  ex = training_examples(_ctx(split), 19, seed=3)
  k = 0
  for u in range(split.num_users):
    real = split.seqs[u][split.seqs[u] > 0]
    if len(real) < 4:  # one train item: no history to predict it from
      continue
    assert ex["target"][k] == real[-3]  # the item before the validation target
    np.testing.assert_array_equal(ex["history"][k][ex["history"][k] > 0], real[:-3])
    cands = ex["candidates"][k]
    assert cands[ex["target_pos"][k]] == ex["target"][k]
    negatives = np.delete(cands, ex["target_pos"][k])
    assert len(negatives) == 19 and not set(negatives) & set(real.tolist())
    assert len({split.titles[c] for c in cands}) == 20  # distinct titles
    k += 1
  assert k == len(ex["target"]) and 0 < k < split.num_users
  again = training_examples(_ctx(split), 19, seed=3)
  np.testing.assert_array_equal(again["candidates"], ex["candidates"])
  other = training_examples(_ctx(split), 19, seed=4)
  assert not np.array_equal(other["candidates"], ex["candidates"])
  # Target positions are spread, not always first.
  assert len(set(ex["target_pos"].tolist())) > 3


def test_all_targets_are_every_prefix():
  split = _split()
  ex = training_examples(_ctx(split), 19, seed=3, targets="all")
  want = []  # brute force: (history items, target) over users, then positions
  for u in range(split.num_users):
    train = split.seqs[u][split.seqs[u] > 0][:-2].tolist()
    want += [(train[:j], train[j]) for j in range(1, len(train))]
  got = [(h[h > 0].tolist(), int(t)) for h, t in zip(ex["history"], ex["target"])]
  assert got == want
  assert ex["history"].shape[1] == split.seqs.shape[1]
  assert all(np.all(h[: len(h) - len(w)] == 0) for h, (w, _) in zip(ex["history"], want))
  np.testing.assert_array_equal(ex["candidates"][np.arange(len(got)), ex["target_pos"]],
                                ex["target"])
  with pytest.raises(UserError, match="train_targets"):
    training_examples(_ctx(split), 19, seed=3, targets="every")


def test_epoch_order_covers_every_example_once_with_weight():
  idx, w = epoch_order(10, 4, seed=0, epoch=1)
  assert len(idx) == 12 and sorted(idx[w > 0].tolist()) == list(range(10))
  assert w.sum() == 10
  idx2, _ = epoch_order(10, 4, seed=0, epoch=2)
  assert not np.array_equal(idx, idx2)
