"""The one candidate sampler (SPEC §1): stored validation/test lists, Stage 2 negatives.

A list is the target plus `num_negatives` items drawn uniformly (by rejection) from the
items the user never touched anywhere in the preprocessed history (train, validation
and test: the user's whole stored sequence), rejecting any draw whose shown title
(`sfubm_jax.data.titles`) normalises equal to one already in the list; then shuffled.
Host-side and pure given the `np.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sfubm_jax.errors import UserError

# Draws per rejection round (fixed: part of the random stream).
_DRAW_BATCH = 64


def touched_items(seq: np.ndarray) -> set[int]:
  """The items of one stored sequence (padding 0 dropped): what the user touched."""
  seq = np.asarray(seq)
  return set(seq[seq > 0].tolist())


class CandidateSampler:
  """Draws candidate lists over one domain's items with title groups `groups` [N+1]."""

  def __init__(self, groups: np.ndarray, *, domain: str = ""):
    self.groups = np.asarray(groups)
    self.num_items = int(self.groups.shape[0]) - 1
    self.num_groups = len(set(self.groups[1:].tolist()))
    self.domain = domain

  def _check_room(self, target: int, touched: set[int], num_negatives: int) -> None:
    if self.num_groups - len(touched) - 1 >= num_negatives:
      return  # enough groups even if every touched item had its own
    allowed = np.ones(self.groups.shape[0], dtype=bool)
    allowed[0] = False
    allowed[list(touched)] = False
    free = set(np.unique(self.groups[allowed]).tolist())
    free.discard(int(self.groups[target]))
    if len(free) < num_negatives:
      raise UserError(
          f"domain {self.domain!r}: a user has only {len(free)} untouched items with distinct "
          f"shown titles to sample {num_negatives} negatives from; lower data.num_negatives, "
          f"raise data.max_title_words or keep more items"
      )

  def draw(self, rng: np.random.Generator, target: int, touched: Iterable[int],
           num_negatives: int) -> tuple[np.ndarray, int]:
    """(candidates [num_negatives + 1] int32 in random order, position of `target`)."""
    touched = set(int(i) for i in touched)
    touched.add(int(target))
    self._check_room(int(target), touched, num_negatives)
    used = {int(self.groups[target])}
    negatives: list[int] = []
    while len(negatives) < num_negatives:
      for item in rng.integers(1, self.num_items + 1, size=_DRAW_BATCH).tolist():
        group = int(self.groups[item])
        if item in touched or group in used:
          continue
        negatives.append(item)
        used.add(group)
        if len(negatives) == num_negatives:
          break
    order = rng.permutation(num_negatives + 1)  # candidates[j] = ([target] + negs)[order[j]]
    candidates = np.asarray([target, *negatives], dtype=np.int32)[order]
    return candidates, int(np.flatnonzero(order == 0)[0])
