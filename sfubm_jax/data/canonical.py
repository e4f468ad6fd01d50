"""Reader of the canonical layout (third_party/datasets/README.md).

One folder per domain:
  items.csv.gz         item_id,title,description
  interactions.csv.gz  user_id,item_id,timestamp,rating
Interactions are grouped by user and chronological; the file order is authoritative
(timestamps may be missing or whole days, so equal times keep their file order) and
nothing is re-sorted: a timestamp earlier than the same user's previous one is an error
naming both lines, since leave-one-out would otherwise hold out the wrong items. Empty
timestamp or rating = the source has none; a written NaN or infinity is an error. Plain
`.csv` files are read too.
"""

from __future__ import annotations

import pathlib

from sfubm_jax.data import files
from sfubm_jax.data.raw import RawDomain, RawDomainBuilder
from sfubm_jax.errors import UserError

ITEMS = ("items.csv.gz", "items.csv")
INTERACTIONS = ("interactions.csv.gz", "interactions.csv")


def read_canonical(
    name: str, directory: pathlib.Path, *, unknown_items: str = "error", every_s: float = 5.0
) -> RawDomain:
  """Reads `directory`/{items,interactions}.csv[.gz] into a RawDomain named `name`."""
  items_path = files.find_file(directory, ITEMS, "the item file")
  inter_path = files.find_file(directory, INTERACTIONS, "the interaction file")
  builder = RawDomainBuilder(name, unknown_items=unknown_items)
  header = ("item_id", "title", "description")
  for line, (item_id, title, description) in files.csv_rows(items_path, header, every_s=every_s):
    builder.add_item(
        item_id.strip(), title, description, where=files.where(items_path, line)
    )
  header = ("user_id", "item_id", "timestamp", "rating")
  rows = files.csv_rows(inter_path, header, every_s=every_s)
  last: dict[str, tuple[float, int]] = {}  # user -> (latest timestamp, its line)
  for line, (user_id, item_id, timestamp, rating) in rows:
    at = files.where(inter_path, line)
    user_id, item_id = user_id.strip(), item_id.strip()
    if unknown_items == "error" and not builder.has_title(item_id):
      raise_unknown(item_id, items_path, at)
    ts = files.parse_float(timestamp, "timestamp", at)
    if ts == ts:  # not NaN: the row has a time
      before = last.get(user_id)
      if before is not None and ts < before[0]:
        raise UserError(
            f"{at}: user {user_id!r} has timestamp {timestamp.strip()}, earlier than "
            f"{before[0]:g} on line {before[1]}; the canonical file must list each user's "
            f"interactions in chronological order (sort it by user, then time)")
      last[user_id] = (ts, line)
    builder.add_interaction(
        user_id, item_id, ts, files.parse_float(rating, "rating", at), where=at,
    )
  return builder.build(sort_by_time=False)


def raise_unknown(item_id: str, catalogue: pathlib.Path, at: str) -> None:
  raise UserError(f"{at}: interaction names item {item_id!r}, which is not in {catalogue}")
