"""The preprocessed per-domain dataset that every later stage reads.

Written by the `data` stage under `DIR/data/<domain>/` as
  arrays.npz  seqs [U, L] int32 (left-padded with 0, chronological, the last two items
              are the validation and test targets), lengths [U] int32,
              {valid,test}_candidates [U, C] int32 (C = 1 + num_negatives, seeded order),
              {valid,test}_target_pos [U] int32 (where the target sits in its list)
  items.json  {"item_ids": [...], "titles": [...], "shown_titles": [...], "texts": [...]},
              index 0 = padding; shown_titles = what prompts show and answers name
  users.json  {"user_ids": [...]} (raw ids, namespaced "<domain>:<id>")
Item indices are 1..N (0 = padding). Every user is evaluated (lengths >= 3).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class DomainSplit:
  """One domain after preprocessing: sequences, leave-one-out targets, candidates."""

  name: str
  item_ids: list[str]  # [N+1] raw ids, item_ids[0] = "" (padding)
  titles: list[str]  # [N+1] full titles
  shown_titles: list[str]  # [N+1] titles as prompts show them (data.titles.shown_title)
  texts: list[str]  # [N+1] encoder text: title + ". " + description (truncated)
  user_ids: list[str]  # [U]
  seqs: np.ndarray  # [U, L] int32, left-padded
  lengths: np.ndarray  # [U] int32
  valid_candidates: np.ndarray  # [U, C] int32
  valid_target_pos: np.ndarray  # [U] int32
  test_candidates: np.ndarray  # [U, C] int32
  test_target_pos: np.ndarray  # [U] int32

  @property
  def num_items(self) -> int:
    """N: real items (indices 1..N)."""
    return len(self.item_ids) - 1

  @property
  def num_users(self) -> int:
    return int(self.seqs.shape[0])

  @property
  def max_len(self) -> int:
    return int(self.seqs.shape[1])

  def history(self, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Input history and target for `which` in {"train", "valid", "test"}.

    Returns (history [U, L] left-padded int32, target [U] int32). The train history
    ends before the validation target and its "target" is its own last item (the
    training loop uses every position); the validation history is the same sequence
    and its target the second-to-last item; the test history also holds the
    validation target and its target is the last item.
    """
    drop = {"train": 2, "valid": 2, "test": 1}[which]
    hist = left_truncate(self.seqs, self.lengths, drop)
    if which == "train":
      return hist, hist[:, -1].copy()
    return hist, self.seqs[:, -drop].copy()

  def candidates(self, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidates [U, C], target_pos [U]) for `which` in {"valid", "test"}."""
    if which == "valid":
      return self.valid_candidates, self.valid_target_pos
    if which == "test":
      return self.test_candidates, self.test_target_pos
    raise ValueError(f"candidates exist for 'valid' and 'test', not {which!r}")


def left_truncate(seqs: np.ndarray, lengths: np.ndarray, drop: int) -> np.ndarray:
  """Drops the last `drop` items of each left-padded row, keeping rows left-padded."""
  del lengths  # Left padding: the real items are the right-most ones.
  out = np.zeros_like(seqs)
  if drop == 0:
    return seqs.copy()
  out[:, drop:] = seqs[:, :-drop]
  return out


def save_split(split: DomainSplit, directory: pathlib.Path) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  io_utils.save_npz(
      directory / "arrays.npz",
      seqs=split.seqs.astype(np.int32),
      lengths=split.lengths.astype(np.int32),
      valid_candidates=split.valid_candidates.astype(np.int32),
      valid_target_pos=split.valid_target_pos.astype(np.int32),
      test_candidates=split.test_candidates.astype(np.int32),
      test_target_pos=split.test_target_pos.astype(np.int32),
  )
  io_utils.write_json(
      directory / "items.json",
      {"item_ids": split.item_ids, "titles": split.titles,
       "shown_titles": split.shown_titles, "texts": split.texts},
  )
  io_utils.write_json(directory / "users.json", {"user_ids": split.user_ids})


def load_split(workdir: pathlib.Path | str, domain: str) -> DomainSplit:
  """Loads what the data stage wrote for `domain`; a clear error if it is missing."""
  directory = pathlib.Path(workdir) / "data" / domain
  if not (directory / "arrays.npz").exists():
    raise UserError(
        f"no preprocessed data for domain {domain!r} at {directory}; run the data stage "
        f"first (--stages=data) with this --workdir"
    )
  arrays = io_utils.load_npz(directory / "arrays.npz")
  items = io_utils.read_json(directory / "items.json")
  users = io_utils.read_json(directory / "users.json")
  if "shown_titles" not in items:
    raise UserError(f"{directory / 'items.json'} has no shown_titles (written by an older "
                    f"version); rerun the data stage in a fresh --workdir")
  return DomainSplit(
      name=domain,
      item_ids=items["item_ids"],
      titles=items["titles"],
      shown_titles=items["shown_titles"],
      texts=items["texts"],
      user_ids=users["user_ids"],
      **arrays,
  )
