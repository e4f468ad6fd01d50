"""Small dataset files written by the data tests (every raw format + canonical)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import pathlib

import numpy as np


def write_gz(path: pathlib.Path, text: str, encoding: str = "utf-8") -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  with gzip.open(path, "wb") as f:
    f.write(text.encode(encoding))
  return path


def csv_text(rows) -> str:
  buf = io.StringIO()
  csv.writer(buf, lineterminator="\n").writerows(rows)
  return buf.getvalue()


def write_canonical(directory: pathlib.Path, items, interactions) -> pathlib.Path:
  """items: (id, title, description); interactions: (user, item, timestamp, rating)."""
  write_gz(directory / "items.csv.gz", csv_text([("item_id", "title", "description"), *items]))
  write_gz(
      directory / "interactions.csv.gz",
      csv_text([("user_id", "item_id", "timestamp", "rating"), *interactions]),
  )
  return directory


def synthetic_canonical(
    directory: pathlib.Path, *, num_users: int, num_items: int, seed: int, prefix: str
) -> pathlib.Path:
  """A random valid canonical domain: users with 3–14 chronological interactions."""
  rng = np.random.default_rng(seed)
  items = [(f"{prefix}{i}", f"{prefix} title {i}", f"about {i}") for i in range(num_items)]
  rows = []
  for u in range(num_users):
    n = int(rng.integers(3, 15))
    chosen = rng.choice(num_items, size=n, replace=False)
    ratings = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=n, p=[0.05, 0.05, 0.2, 0.3, 0.4])
    for k, (i, r) in enumerate(zip(chosen, ratings)):
      rows.append((f"u{u}", f"{prefix}{i}", str(1000 + 10 * k), str(r)))
  return write_canonical(directory, items, rows)


def write_amazon2014(directory: pathlib.Path, category: str, reviews, meta) -> None:
  """reviews: dicts (JSON lines); meta: dicts written as Python literals (repr)."""
  write_gz(
      directory / f"reviews_{category}.json.gz", "".join(json.dumps(r) + "\n" for r in reviews)
  )
  write_gz(directory / f"meta_{category}.json.gz", "".join(repr(m) + "\n" for m in meta))


def write_amazon2018(directory: pathlib.Path, category: str, reviews, meta) -> None:
  write_gz(directory / f"{category}.json.gz", "".join(json.dumps(r) + "\n" for r in reviews))
  write_gz(directory / f"meta_{category}.json.gz", "".join(json.dumps(m) + "\n" for m in meta))
