"""SPEC §1 preprocessing: raw domain -> leave-one-out split with stored candidates.

Steps, in order (paper §4.2, following LLaRA):
  1. drop interactions rated below `min_rating` (rows without a rating are kept);
  2. drop users with fewer than `min_user_len` interactions;
  3. stratified user sampling down to `max_users`: strata of interaction counts
     [m, m+w), [m+w, m+2w), ...; quotas proportional to stratum size, largest-remainder
     rounding so they sum to exactly `max_users`; uniform without replacement inside;
  4. keep each user's most recent `max_seq_len` interactions (chronological);
  5. re-index the kept items densely 1..N (catalogue order); ids become "<domain>:<id>".
Then leave-one-out (last = test target, second-to-last = validation target) and, per
evaluated user and split, a candidate list from `sfubm_jax.data.candidates` (the target
and `num_negatives` items the user never touched in the stored sequence, shown titles
distinct), whose target position is stored. The shown titles (`data.titles`) are stored
with the split.

Pure functions of (RawDomain, PreprocessParams): randomness comes from a
`np.random.SeedSequence` of (seed, domain name), so the same config gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from sfubm_jax.data.candidates import CandidateSampler, touched_items
from sfubm_jax.data.raw import RawDomain
from sfubm_jax.data.split import DomainSplit
from sfubm_jax.data.titles import shown_title, title_groups
from sfubm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
  """The `config.data` fields preprocessing uses, for one domain."""

  min_rating: float
  min_user_len: int
  max_users: int  # 0 = keep every user
  stratum_width: int
  max_seq_len: int
  num_negatives: int
  max_text_chars: int
  max_title_words: int
  seed: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, domain: str) -> PreprocessParams:
    d = config.data
    if domain not in d.max_users:
      raise UserError(f"config.data.max_users has no entry for domain {domain!r}")
    params = cls(
        min_rating=float(d.min_rating),
        min_user_len=int(d.min_user_len),
        max_users=int(d.max_users[domain]),
        stratum_width=int(d.stratum_width),
        max_seq_len=int(d.max_seq_len),
        num_negatives=int(d.num_negatives),
        max_text_chars=int(d.max_text_chars),
        max_title_words=int(d.max_title_words),
        seed=int(d.seed),
    )
    params.validate()
    return params

  def validate(self) -> None:
    checks = [
        (self.min_user_len >= 3, "data.min_user_len must be >= 3 (leave-one-out needs a "
                                 "training item, a validation and a test target)"),
        (self.max_seq_len >= 3, "data.max_seq_len must be >= 3"),
        (self.max_users >= 0, "data.max_users must be >= 0 (0 keeps every user)"),
        (self.stratum_width >= 1, "data.stratum_width must be >= 1"),
        (self.num_negatives >= 1, "data.num_negatives must be >= 1"),
        (self.max_text_chars >= 1, "data.max_text_chars must be >= 1"),
        (self.max_title_words >= 1, "data.max_title_words must be >= 1"),
    ]
    for ok, message in checks:
      if not ok:
        raise UserError(f"config {message}")


def rating_mask(rating: np.ndarray, min_rating: float) -> np.ndarray:
  """[M] bool: rated at least `min_rating`, or not rated at all (step 1)."""
  return np.isnan(rating) | (rating >= min_rating)


def stratum_quotas(sizes: np.ndarray, target: int) -> np.ndarray:
  """Users to draw per stratum: proportional, largest remainder, summing to `target`.

  `target` <= 0 or >= the total keeps every stratum whole. Exact integer arithmetic;
  equal remainders go to the lower stratum first.
  """
  sizes = np.asarray(sizes, dtype=np.int64)
  total = int(sizes.sum())
  if target <= 0 or target >= total:
    return sizes.copy()
  quota, remainder = np.divmod(sizes * target, total)
  left = target - int(quota.sum())
  order = np.lexsort((np.arange(sizes.size), -remainder))
  quota[order[:left]] += 1
  return quota


def stratified_sample(
    counts: np.ndarray, *, min_len: int, width: int, target: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
  """Indices (ascending) of the users kept by step 3, and the strata table.

  counts: [U] interactions per eligible user (all >= min_len).
  """
  stratum = (np.asarray(counts) - min_len) // width  # [U]
  ids, sizes = np.unique(stratum, return_counts=True)
  quotas = stratum_quotas(sizes, target)
  chosen, table = [], []
  for s, size, quota in zip(ids.tolist(), sizes.tolist(), quotas.tolist()):
    members = np.flatnonzero(stratum == s)
    if quota < size:
      members = members[rng.choice(size, size=quota, replace=False)]
    chosen.append(members)
    lo = min_len + s * width
    table.append({"range": [lo, lo + width], "users": size, "kept": quota})
  kept = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
  return kept, table


def preprocess(raw: RawDomain, params: PreprocessParams) -> tuple[DomainSplit, dict]:
  """Steps 1–5, the leave-one-out split and the candidates; returns (split, stats)."""
  name = raw.name
  num_raw_users = len(raw.user_ids)
  # 1. Rating filter (rows stay grouped per user, chronological).
  keep = rating_mask(raw.rating, params.min_rating)
  user, item = raw.user[keep], raw.item[keep]  # [M1]
  counts = np.bincount(user, minlength=num_raw_users)  # [U_raw]
  # 2. Minimum length.
  eligible = np.flatnonzero(counts >= params.min_user_len)  # [U2]
  if eligible.size == 0:
    raise UserError(
        f"domain {name!r}: no user has {params.min_user_len} interactions rated >= "
        f"{params.min_rating}; lower data.min_user_len or data.min_rating"
    )
  # 3. Stratified sampling.
  sample_seq, negative_seq = np.random.SeedSequence(
      [params.seed, zlib.crc32(name.encode("utf-8"))]
  ).spawn(2)
  chosen, strata = stratified_sample(
      counts[eligible], min_len=params.min_user_len, width=params.stratum_width,
      target=params.max_users, rng=np.random.default_rng(sample_seq),
  )
  users = eligible[chosen]  # [U] raw user indices, ascending
  # 4. Most recent max_seq_len interactions.
  starts = np.searchsorted(user, users, side="left")
  ends = np.searchsorted(user, users, side="right")
  starts = np.maximum(starts, ends - params.max_seq_len)
  raw_seqs = [item[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
  # 5. Dense re-indexing in catalogue order; 0 = padding.
  kept_items = np.unique(np.concatenate(raw_seqs))  # [N] raw item indices, ascending
  new_index = np.zeros(len(raw.item_ids), dtype=np.int32)
  new_index[kept_items] = np.arange(1, kept_items.size + 1, dtype=np.int32)
  num_users = int(users.size)
  lengths = np.array([s.size for s in raw_seqs], dtype=np.int32)  # [U]
  seqs = np.zeros((num_users, params.max_seq_len), dtype=np.int32)  # [U, L] left-padded
  for row, s in enumerate(raw_seqs):
    seqs[row, params.max_seq_len - s.size:] = new_index[s]

  titles = [""] + [raw.titles[i] for i in kept_items.tolist()]  # [N+1]
  shown = [""] + [shown_title(t, params.max_title_words) for t in titles[1:]]  # [N+1]
  texts = [""] + [_encoder_text(raw.titles[i], raw.descriptions[i], params.max_text_chars)
                  for i in kept_items.tolist()]

  # Candidates: never-touched items of the stored sequence, shown titles distinct.
  sampler = CandidateSampler(title_groups(shown), domain=name)
  valid = np.zeros((num_users, params.num_negatives + 1), dtype=np.int32)
  test = np.zeros_like(valid)
  valid_pos = np.zeros(num_users, dtype=np.int32)
  test_pos = np.zeros(num_users, dtype=np.int32)
  rng = np.random.default_rng(negative_seq)
  for row in range(num_users):
    touched = touched_items(seqs[row])
    for out, pos, target in ((valid, valid_pos, seqs[row, -2]), (test, test_pos, seqs[row, -1])):
      out[row], pos[row] = sampler.draw(rng, int(target), touched, params.num_negatives)

  split = DomainSplit(
      name=name,
      item_ids=[""] + [f"{name}:{raw.item_ids[i]}" for i in kept_items.tolist()],
      titles=titles,
      shown_titles=shown,
      texts=texts,
      user_ids=[f"{name}:{raw.user_ids[u]}" for u in users.tolist()],
      seqs=seqs,
      lengths=lengths,
      valid_candidates=valid,
      valid_target_pos=valid_pos,
      test_candidates=test,
      test_target_pos=test_pos,
  )
  stats = {
      "raw": {"users": num_raw_users, "items": len(raw.item_ids),
              "interactions": raw.num_interactions, "dropped": dict(raw.dropped)},
      "after_rating_filter": {"users": int((counts > 0).sum()), "interactions": int(keep.sum())},
      "after_min_len": {"users": int(eligible.size),
                        "interactions": int(counts[eligible].sum())},
      "strata": strata,
  }
  return split, stats


def _encoder_text(title: str, description: str, limit: int) -> str:
  """title + ". " + description (SPEC §1), cut to `limit` characters."""
  text = f"{title}. {description}" if description else title
  return text[:limit]



def assert_disjoint(splits: Sequence[DomainSplit]) -> None:
  """Users and items of different domains never overlap (SPEC §1.5)."""
  names = [s.name for s in splits]
  if len(set(names)) != len(names):
    raise UserError(f"config.domains lists a domain twice: {names}")
  seen_users: dict[str, str] = {}
  seen_items: dict[str, str] = {}
  for s in splits:
    for kind, seen, ids in (("user", seen_users, s.user_ids), ("item", seen_items, s.item_ids[1:])):
      for i in ids:
        if seen.setdefault(i, s.name) != s.name:
          raise UserError(f"{kind} {i!r} appears in domains {seen[i]!r} and {s.name!r}")
