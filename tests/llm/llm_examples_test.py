"""Training examples: history/target from the train split, seeded never-touched negatives."""

import numpy as np
import pytest

from sfubm_jax.data.candidates import CandidateSampler
from sfubm_jax.data.split import DomainSplit
from sfubm_jax.data.titles import title_groups
from sfubm_jax.errors import UserError
from sfubm_jax.llm import batches
from sfubm_jax.llm.context import DomainContext
from sfubm_jax.llm.train_stage import training_examples


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
                       [[]] * len(split.titles), split.titles,
                       sampler=CandidateSampler(title_groups(split.titles), domain="food"),
                       encode_users=None)


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


def test_train_prompts_is_a_seeded_subset_of_the_examples():
  split = _split()
  every = training_examples(_ctx(split), 19, seed=3, targets="all")
  some = training_examples(_ctx(split), 19, seed=3, targets="all", limit=7)
  assert len(some["target"]) == 7
  pairs = {(int(u), int(t)) for u, t in zip(every["user"], every["target"])}
  assert {(int(u), int(t)) for u, t in zip(some["user"], some["target"])} <= pairs
  again = training_examples(_ctx(split), 19, seed=3, targets="all", limit=7)
  np.testing.assert_array_equal(again["candidates"], some["candidates"])


def test_train_batches_cover_every_example_once_per_epoch_within_buckets():
  lengths = np.array([40, 70, 33, 90, 64, 100, 5, 65, 66, 31, 96, 97])
  plan = batches.train_batches(lengths, 2, seed=0, epoch=1, max_buckets=3)
  real = np.concatenate([b.rows[b.weight > 0] for b in plan])
  assert sorted(real.tolist()) == list(range(len(lengths)))
  assert all(b.weight.all() for b in plan)  # 12 rows = 3 buckets of whole batches of 2
  # Buckets are runs of the sorted lengths, each padded to its longest row rounded to 8.
  assert sorted({b.length for b in plan}) == [40, 72, 104]
  by_len = {}
  for b in plan:
    assert len(b.rows) == 2 and b.length >= lengths[b.rows].max()
    by_len.setdefault(b.length, []).extend(lengths[b.rows].tolist())
  assert sorted(by_len[40]) == [5, 31, 33, 40] and sorted(by_len[104]) == [90, 96, 97, 100]
  again = batches.train_batches(lengths, 2, seed=0, epoch=1, max_buckets=3)
  assert [b.rows.tolist() for b in again] == [b.rows.tolist() for b in plan]
  other = batches.train_batches(lengths, 2, seed=0, epoch=2, max_buckets=3)
  assert [b.rows.tolist() for b in other] != [b.rows.tolist() for b in plan]
  # A sample smaller than the buckets: no filler rows beyond one partial batch.
  few = batches.train_batches(lengths[:5], 4, seed=0, epoch=0)
  assert sum(int((b.weight == 0).sum()) for b in few) == 3


def test_bucketing_cuts_padding_against_one_global_length():
  rng = np.random.default_rng(0)
  lengths = rng.integers(300, 480, size=256)
  plan = batches.train_batches(lengths, 8, seed=0, epoch=0)
  total = sum(len(b.rows) * b.length for b in plan)
  assert batches.padding_share(lengths, plan) == pytest.approx(1 - lengths.sum() / total)
  flat = [batches.Batch(b.rows, b.weight, 480) for b in plan]
  assert batches.padding_share(lengths, plan) < 0.1 < batches.padding_share(lengths, flat)
  assert len({b.length for b in plan}) == batches.MAX_BUCKETS  # compilations bounded


def test_eval_chunks_hold_every_row_once_in_bucket_order():
  lengths = np.array([40, 70, 33, 90, 64, 100, 5])
  chunks = batches.eval_chunks(lengths, 3, max_buckets=2)
  real = np.concatenate([c.rows[c.weight > 0] for c in chunks])
  assert sorted(real.tolist()) == list(range(len(lengths)))
  assert [c.length for c in chunks] == sorted(c.length for c in chunks)
  assert all(c.length >= lengths[c.rows].max() for c in chunks)
  assert len({c.length for c in chunks}) == 2


def test_sample_is_all_rows_at_zero_and_a_sorted_seeded_subset_otherwise():
  np.testing.assert_array_equal(batches.sample(5, 0, 1, 2), np.arange(5))
  np.testing.assert_array_equal(batches.sample(5, 9, 1, 2), np.arange(5))
  s = batches.sample(100, 10, 1, 2)
  assert len(set(s.tolist())) == 10 and np.all(np.diff(s) > 0)
  np.testing.assert_array_equal(s, batches.sample(100, 10, 1, 2))
  assert not np.array_equal(s, batches.sample(100, 10, 1, 3))


def _slots_brute_force(lengths, batch, max_buckets):
  """Fewest padded slots over every cut of the sorted rows into <= max_buckets runs of whole
  batches (itertools over all cut sets), and the fewest buckets reaching it."""
  import itertools
  s = np.sort(lengths)
  nb = -(-len(s) // batch)
  best = None
  for k in range(1, min(max_buckets, nb) + 1):
    for inner in itertools.combinations(range(1, nb), k - 1):
      cuts = (0, *inner, nb)
      slots = sum((b - a) * batch * (-(-int(s[min(b * batch, len(s)) - 1]) // 8) * 8)
                  for a, b in zip(cuts[:-1], cuts[1:]))
      if best is None or slots < best[0]:
        best = (slots, k)
  return best


@pytest.mark.parametrize("seed", range(6))
def test_bucket_cuts_have_the_fewest_padded_slots(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 40))
  # Long-tailed lengths, as prompts are: most short, a few far longer.
  lengths = (rng.lognormal(5.0, 0.35 + 0.1 * seed, size=n)).astype(int) + 1
  batch, k = int(rng.integers(2, 5)), int(rng.integers(1, 5))
  want_slots, want_k = _slots_brute_force(lengths, batch, k)
  chunks = batches.eval_chunks(lengths, batch, max_buckets=k)
  assert sum(len(c.rows) * c.length for c in chunks) == want_slots
  assert len({c.length for c in chunks}) == want_k
  plan = batches.train_batches(lengths, batch, seed=0, epoch=0, max_buckets=k)
  assert sum(len(b.rows) * b.length for b in plan) == want_slots


def test_long_tail_gets_its_own_bucket():
  # 30 rows of 100 tokens and 2 of 400, batches of 2, 2 buckets: the tail batch alone at 400.
  lengths = np.array([100] * 30 + [400, 400])
  chunks = batches.eval_chunks(lengths, 2, max_buckets=2)
  assert sorted(c.length for c in chunks) == [104] * 15 + [400]
  assert batches.padding_share(lengths, chunks) == pytest.approx(1 - 3800 / (30 * 104 + 800))
  # Equal lengths need one bucket (one compilation), whatever max_buckets allows.
  assert len({c.length for c in batches.eval_chunks(np.full(9, 50), 2, max_buckets=4)}) == 1
