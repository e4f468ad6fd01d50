"""The in-memory raw domain every reader produces, and the builder readers fill.

A `RawDomain` is a catalogue (item id -> title, description) plus interactions grouped
per user in chronological order, held as flat numpy arrays so that tens of millions of
interactions fit in memory (about 20 bytes each). Readers stream their files row by
row into a `RawDomainBuilder`; `build` groups the rows per user (users in order of
first appearance) and, for sources with timestamps, sorts each user's rows by time with
a stable sort, so the file order decides ties.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sfubm_jax.errors import UserError

# What to do with an interaction whose item is not in the catalogue or has no title.
UNKNOWN_ITEM_POLICIES = ("error", "drop")


@dataclasses.dataclass(frozen=True)
class RawDomain:
  """One domain as read from its source, before any preprocessing."""

  name: str
  item_ids: list[str]  # [I] raw ids in catalogue order
  titles: list[str]  # [I]
  descriptions: list[str]  # [I] ("" when the source has none)
  user_ids: list[str]  # [U] raw ids in order of first appearance
  user: np.ndarray  # [M] int32 index into user_ids; rows grouped by user, ascending
  item: np.ndarray  # [M] int32 index into item_ids
  timestamp: np.ndarray  # [M] float64 seconds, NaN = none
  rating: np.ndarray  # [M] float32, NaN = none
  dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> rows

  @property
  def num_interactions(self) -> int:
    return int(self.user.shape[0])

  def user_bounds(self) -> np.ndarray:
    """[U+1] int64 offsets: user u's rows are [bounds[u], bounds[u+1])."""
    counts = np.bincount(self.user, minlength=len(self.user_ids))
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


class _Column:
  """A growable typed column (amortised appends without Python-object overhead)."""

  def __init__(self, dtype):
    self._buf = np.empty(1024, dtype)
    self._n = 0

  def append(self, value) -> None:
    if self._n == self._buf.shape[0]:
      self._buf = np.resize(self._buf, 2 * self._n)
    self._buf[self._n] = value
    self._n += 1

  def array(self) -> np.ndarray:
    return self._buf[: self._n].copy()


class RawDomainBuilder:
  """Collects items and interactions as a reader streams them.

  Items may be declared before or after the interactions that name them (the Amazon
  reviews come before their metadata); `build` checks that every interaction names an
  item with a title, reporting the file and line of the first that does not, or drops
  those rows when `unknown_items="drop"` (counted in `RawDomain.dropped`).
  """

  def __init__(self, name: str, *, unknown_items: str = "error"):
    if unknown_items not in UNKNOWN_ITEM_POLICIES:
      raise UserError(
          f"config data.unknown_items={unknown_items!r} is not one of {UNKNOWN_ITEM_POLICIES}"
      )
    self.name = name
    self.unknown_items = unknown_items
    self._item_index: dict[str, int] = {}
    self._item_ids: list[str] = []
    self._titles: list[str | None] = []
    self._descriptions: list[str] = []
    self._first_use: list[str] = []  # [I] "file:line" of the first interaction naming it
    self._user_index: dict[str, int] = {}
    self._user_ids: list[str] = []
    self._user = _Column(np.int32)
    self._item = _Column(np.int32)
    self._timestamp = _Column(np.float64)
    self._rating = _Column(np.float32)

  def _item_slot(self, item_id: str) -> int:
    index = self._item_index.get(item_id)
    if index is None:
      index = len(self._item_ids)
      self._item_index[item_id] = index
      self._item_ids.append(item_id)
      self._titles.append(None)
      self._descriptions.append("")
      self._first_use.append("")
    return index

  def has_item(self, item_id: str) -> bool:
    return item_id in self._item_index

  def has_title(self, item_id: str) -> bool:
    index = self._item_index.get(item_id)
    return index is not None and self._titles[index] is not None

  def add_item(self, item_id: str, title: str, description: str, *, where: str) -> None:
    """Declares an item; an empty title or a repeated id is an error at `where`."""
    title = title.strip()
    if not item_id:
      raise UserError(f"{where}: empty item id")
    if not title and self.unknown_items == "error":
      raise UserError(
          f"{where}: item {item_id!r} has an empty title (titles are the LLM's answers); "
          f"fix the row or set --config.data.unknown_items=drop"
      )
    index = self._item_slot(item_id)
    if self._titles[index] is not None:
      raise UserError(f"{where}: item {item_id!r} is listed twice")
    self._titles[index] = title or None
    self._descriptions[index] = description.strip()

  def add_interaction(
      self, user_id: str, item_id: str, timestamp: float, rating: float, *, where: str
  ) -> None:
    """Appends one interaction (NaN timestamp/rating = the source has none)."""
    if not user_id or not item_id:
      raise UserError(f"{where}: empty user or item id")
    index = self._item_slot(item_id)
    if not self._first_use[index]:
      self._first_use[index] = where
    user = self._user_index.get(user_id)
    if user is None:
      user = len(self._user_ids)
      self._user_index[user_id] = user
      self._user_ids.append(user_id)
    self._user.append(user)
    self._item.append(index)
    self._timestamp.append(timestamp)
    self._rating.append(rating)

  def build(self, *, sort_by_time: bool) -> RawDomain:
    """Groups rows per user (stable) and, if `sort_by_time`, orders each user's by time."""
    user = self._user.array()
    item = self._item.array()
    timestamp = self._timestamp.array()
    rating = self._rating.array()
    titled = np.array([t is not None for t in self._titles], dtype=bool)  # [I]
    dropped: dict[str, int] = {}
    if item.size and not titled[item].all():
      if self.unknown_items == "error":
        bad = int(item[~titled[item]][0])
        raise UserError(
            f"{self._first_use[bad]}: interaction names item {self._item_ids[bad]!r}, which "
            f"is not in the item catalogue (or has no title); fix the data or set "
            f"--config.data.unknown_items=drop"
        )
      keep = titled[item]
      dropped["unknown_or_untitled_item"] = int((~keep).sum())
      user, item, timestamp, rating = user[keep], item[keep], timestamp[keep], rating[keep]
    if sort_by_time:
      if np.isnan(timestamp).any():
        raise UserError(f"{self.name}: some interactions have no timestamp; cannot sort")
      order = np.argsort(timestamp, kind="stable")
      order = order[np.argsort(user[order], kind="stable")]
    else:
      order = np.argsort(user, kind="stable")
    user, item, timestamp, rating = user[order], item[order], timestamp[order], rating[order]
    # Keep titled items only and compact users that still have rows.
    item_map = np.cumsum(titled) - 1  # old index -> new index among titled items
    present = np.zeros(len(self._user_ids), dtype=bool)
    present[user] = True
    user_map = np.cumsum(present) - 1
    return RawDomain(
        name=self.name,
        item_ids=[i for i, t in zip(self._item_ids, titled) if t],
        titles=[t for t in self._titles if t is not None],
        descriptions=[d for d, t in zip(self._descriptions, titled) if t],
        user_ids=[u for u, p in zip(self._user_ids, present) if p],
        user=user_map[user].astype(np.int32),
        item=item_map[item].astype(np.int32),
        timestamp=timestamp,
        rating=rating,
        dropped=dropped,
    )
