"""SPEC §1 preprocessing against a plain-Python re-implementation and hand-computed cases."""

import csv
import gzip
from fractions import Fraction

import numpy as np
import pytest
from data_fixtures import synthetic_canonical, write_canonical

from sfubm_jax.data.canonical import read_canonical
from sfubm_jax.data.preprocess import (
    PreprocessParams,
    assert_disjoint,
    preprocess,
    stratum_quotas,
)
from sfubm_jax.data.titles import normalize
from sfubm_jax.errors import UserError


def params(**overrides):
  base = dict(min_rating=3.0, min_user_len=5, max_users=0, stratum_width=5, max_seq_len=10,
              num_negatives=19, max_text_chars=40, max_title_words=12, seed=0)
  base.update(overrides)
  return PreprocessParams(**base)


def read_rows(directory):
  """Plain csv reading of a canonical folder: (items in file order, interaction rows)."""
  with gzip.open(directory / "items.csv.gz", "rt", newline="") as f:
    items = list(csv.reader(f))[1:]
  with gzip.open(directory / "interactions.csv.gz", "rt", newline="") as f:
    rows = list(csv.reader(f))[1:]
  return items, rows


def reference_sequences(rows, min_rating, min_len, max_len):
  """{user: last max_len kept items} for users with >= min_len kept rows, in file order."""
  order, kept = [], {}
  for user, item, _, rating in rows:
    if user not in kept:
      order.append(user)
      kept[user] = []
    if rating == "" or float(rating) >= min_rating:
      kept[user].append(item)
  return {u: kept[u][-max_len:] for u in order if len(kept[u]) >= min_len}


def raw_sequences(split):
  """{raw user id: [raw item ids]} read back from a split."""
  out = {}
  for uid, seq, n in zip(split.user_ids, split.seqs, split.lengths):
    assert (seq[: len(seq) - n] == 0).all() and (seq[len(seq) - n:] > 0).all()  # left padded
    out[uid.split(":", 1)[1]] = [split.item_ids[i].split(":", 1)[1] for i in seq[len(seq) - n:]]
  return out


@pytest.fixture
def domain(tmp_path):
  directory = synthetic_canonical(tmp_path / "shop", num_users=120, num_items=80, seed=7,
                                  prefix="p")
  return directory, read_canonical("shop", directory)


def test_keep_all_users_matches_reference(domain):
  directory, raw = domain
  items, rows = read_rows(directory)
  split, stats = preprocess(raw, params(max_seq_len=6))
  expected = reference_sequences(rows, 3.0, 5, 6)
  assert raw_sequences(split) == expected
  assert list(raw_sequences(split)) == list(expected)  # users in order of first appearance
  used = {i for seq in expected.values() for i in seq}
  catalogue_order = [i for i, _, _ in items if i in used]
  assert split.item_ids == [""] + [f"shop:{i}" for i in catalogue_order]  # dense, 1..N
  titles = {i: t for i, t, _ in items}
  assert split.titles[1:] == [titles[i] for i in catalogue_order]
  assert split.texts[1] == f"{titles[catalogue_order[0]]}. about {catalogue_order[0][1:]}"[:40]
  assert stats["after_min_len"]["users"] == len(expected) == split.num_users
  kept_rows = sum(1 for r in rows if r[3] == "" or float(r[3]) >= 3.0)
  assert stats["after_rating_filter"]["interactions"] == kept_rows


def test_leave_one_out_histories(domain):
  _, raw = domain
  split, _ = preprocess(raw, params())
  seqs = raw_sequences(split)
  for which, drop in (("valid", 2), ("test", 1)):
    hist, target = split.history(which)
    for row, uid in enumerate(split.user_ids):
      seq = seqs[uid.split(":", 1)[1]]
      assert split.item_ids[target[row]].endswith(":" + seq[-drop])
      real = [split.item_ids[i].split(":", 1)[1] for i in hist[row] if i]
      assert real == seq[:-drop]


def test_stratum_quotas_hand_values():
  assert stratum_quotas(np.array([7, 2, 1]), 5).tolist() == [4, 1, 0]  # 3.5, 1, .5: tie -> low
  assert stratum_quotas(np.array([10, 5, 3, 2]), 7).tolist() == [3, 2, 1, 1]
  assert stratum_quotas(np.array([4, 4]), 0).tolist() == [4, 4]  # 0 = keep all
  assert stratum_quotas(np.array([4, 4]), 100).tolist() == [4, 4]


def test_stratum_quotas_largest_remainder_reference():
  rng = np.random.default_rng(0)
  for _ in range(200):
    sizes = rng.integers(1, 500, size=rng.integers(1, 12))
    target = int(rng.integers(1, sizes.sum()))
    exact = [Fraction(int(s) * target, int(sizes.sum())) for s in sizes]
    floors = [int(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda k: (-(exact[k] - floors[k]), k))
    for k in order[: target - sum(floors)]:
      floors[k] += 1
    assert stratum_quotas(sizes, target).tolist() == floors


def test_stratified_sampling_counts_per_stratum(domain):
  directory, raw = domain
  _, rows = read_rows(directory)
  # Counts after the rating filter, before truncation, for every eligible user.
  counts = {}
  for user, _, _, rating in rows:
    if rating == "" or float(rating) >= 3.0:
      counts[user] = counts.get(user, 0) + 1
  eligible = {u: c for u, c in counts.items() if c >= 5}
  split, stats = preprocess(raw, params(max_users=25, stratum_width=3))
  assert split.num_users == 25
  strata = sorted({(c - 5) // 3 for c in eligible.values()})
  sizes = np.array([sum((c - 5) // 3 == s for c in eligible.values()) for s in strata])
  quotas = stratum_quotas(sizes, 25)
  kept = [uid.split(":", 1)[1] for uid in split.user_ids]
  for s, quota in zip(strata, quotas):
    assert sum((eligible[u] - 5) // 3 == s for u in kept) == quota
  assert [t["kept"] for t in stats["strata"]] == quotas.tolist()
  assert [t["range"][0] for t in stats["strata"]] == [5 + 3 * s for s in strata]
  # Kept users keep their full (truncated) reference sequences.
  reference = reference_sequences(rows, 3.0, 5, 10)
  assert raw_sequences(split) == {u: reference[u] for u in kept}
  # A different seed samples other users.
  other, _ = preprocess(raw, params(max_users=25, stratum_width=3, seed=1))
  assert other.user_ids != split.user_ids


def test_candidates(tmp_path):
  # Duplicate titles up to case/space/NFKC ("ﬁ" ligature) and titles equal only once
  # cut to the shown 3 words ("Long Name One Extra ..."): never twice in a list.
  items = [(f"i{k}", f"Title {k % 30}", "") for k in range(60)]
  items += [("x1", "Same  Name", ""), ("x2", "same name", ""), ("x3", "SAME NAME ", ""),
            ("x4", "ﬁne", ""), ("x5", "fine", ""), ("x6", "Long Name One Extra", ""),
            ("x7", "long name one, other", ""), ("x8", '"Long Name One" Third', "")]
  rng = np.random.default_rng(3)
  rows = []
  for u in range(40):
    picks = rng.choice(len(items), size=14, replace=False)
    for k, p in enumerate(picks):
      rows.append((f"u{u}", items[p][0], str(k), "1" if k == 5 else "4"))
  raw = read_canonical("shop", write_canonical(tmp_path, items, rows))
  split, _ = preprocess(raw, params(max_seq_len=8, max_title_words=3))
  # The first 3 words, without a separator the cut leaves dangling ("one," -> "one").
  assert split.shown_titles[1:] == [" ".join(t.split()[:3]).rstrip(",")
                                    for t in split.titles[1:]]
  assert "long name one" in split.shown_titles and "long name one," not in split.shown_titles
  seqs = split.seqs
  for which, target_col in (("valid", -2), ("test", -1)):
    cands, pos = split.candidates(which)
    assert cands.shape == (split.num_users, 20)
    for row in range(split.num_users):
      c = cands[row]
      assert c[pos[row]] == seqs[row, target_col]  # the target sits at target_pos
      assert ((c >= 1) & (c <= split.num_items)).all()
      assert len(set(c.tolist())) == 20
      negatives = [int(i) for k, i in enumerate(c) if k != pos[row]]
      assert not set(negatives) & set(seqs[row].tolist())  # train, valid, test: untouched
      shown = [normalize(split.shown_titles[i]) for i in c]
      assert len(set(shown)) == 20  # shown titles unique within a list
  # The target position is spread over the list (a seeded shuffle, not always 0).
  assert len(set(split.test_target_pos.tolist())) > 5


def test_determinism_and_impossible_negatives(tmp_path, domain):
  _, raw = domain
  a, _ = preprocess(raw, params(max_users=30))
  b, _ = preprocess(raw, params(max_users=30))
  for field in ("seqs", "lengths", "valid_candidates", "valid_target_pos", "test_candidates",
                "test_target_pos"):
    assert np.array_equal(getattr(a, field), getattr(b, field))
  assert a.user_ids == b.user_ids and a.item_ids == b.item_ids
  # Only 8 distinct titles in the domain: 19 distinct-title negatives are impossible.
  items = [(f"i{k}", f"Title {k % 8}", "") for k in range(40)]
  rows = [(f"u{u}", f"i{(u + k) % 40}", str(k), "") for u in range(5) for k in range(6)]
  small = read_canonical("tiny", write_canonical(tmp_path / "t", items, rows))
  with pytest.raises(UserError, match="distinct shown titles to sample 19 negatives"):
    preprocess(small, params(max_seq_len=6))


def test_config_checks_and_disjointness(domain):
  with pytest.raises(UserError, match="min_user_len must be >= 3"):
    params(min_user_len=2).validate()
  _, raw = domain
  split, _ = preprocess(raw, params(max_users=10))
  with pytest.raises(UserError, match="lists a domain twice"):
    assert_disjoint([split, split])
  assert all(u.startswith("shop:") for u in split.user_ids)
  assert all(i.startswith("shop:") for i in split.item_ids[1:])
