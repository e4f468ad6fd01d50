"""Readers of the raw Amazon review data (McAuley et al.) in its two published formats.

2014 (jmcauley.ucsd.edu/data/amazon): `reviews_<Cat>.json.gz` (or the 5-core
`reviews_<Cat>_5.json.gz`), one JSON object a line, and `meta_<Cat>.json.gz`, one
Python-literal dict a line (single quotes: read with `ast.literal_eval`).
2018 (nijianmo.github.io/amazon): `<Cat>.json.gz` (or `<Cat>_5.json.gz`) and
`meta_<Cat>.json.gz`, both JSON lines; `description` is a list of strings.
Reviews carry reviewerID, asin, overall (the rating) and unixReviewTime.

Both files are streamed line by line. The reviews are read first and only the
metadata of reviewed items is kept, so a multi-GB catalogue never sits in memory;
descriptions are cut to `max_description_chars` (the encoder text is truncated anyway).
"""

from __future__ import annotations

import ast
import html
import json
import math
import pathlib

from sfubm_jax.data import files
from sfubm_jax.data.raw import RawDomain, RawDomainBuilder
from sfubm_jax.errors import UserError

VERSIONS = ("amazon2014", "amazon2018")


def file_names(version: str, category: str) -> tuple[list[str], list[str]]:
  """(review file candidates, metadata file candidates) of `version`, in preference order."""
  stem = {"amazon2014": f"reviews_{category}", "amazon2018": category}[version]
  reviews = [f"{stem}{s}" for s in (".json.gz", ".json", "_5.json.gz", "_5.json")]
  meta = [f"meta_{category}{s}" for s in (".json.gz", ".json")]
  return reviews, meta


def _parse_record(line: str, at: str) -> dict:
  """One JSON (or, for 2014 metadata, Python-literal) dict; anything else is an error."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    try:
      record = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
      raise UserError(f"{at}: malformed row (neither JSON nor a Python dict literal)") from None
  if not isinstance(record, dict):
    raise UserError(f"{at}: malformed row (expected an object, got {type(record).__name__})")
  return record


def _field(record: dict, key: str, at: str):
  if key not in record or record[key] in (None, ""):
    raise UserError(f"{at}: malformed row, field {key!r} is missing")
  return record[key]


def _number(record: dict, key: str, at: str) -> float:
  value = _field(record, key, at)
  try:
    number = float(value)
  except (TypeError, ValueError):
    raise UserError(f"{at}: malformed row, field {key!r} = {value!r} is not a number") from None
  if not math.isfinite(number):
    raise UserError(f"{at}: malformed row, field {key!r} = {value!r} is not finite")
  return number


def _description(value, limit: int) -> str:
  if isinstance(value, list):
    value = " ".join(str(v).strip() for v in value if str(v).strip())
  text = html.unescape(str(value or "")).strip()
  return " ".join(text.split())[:limit]


def read_amazon(
    name: str,
    directory: pathlib.Path,
    *,
    version: str,
    category: str,
    unknown_items: str = "error",
    max_description_chars: int = 2048,
    every_s: float = 5.0,
) -> RawDomain:
  """Reads one Amazon category (`version` in VERSIONS) into a RawDomain named `name`."""
  if version not in VERSIONS:
    raise UserError(f"unknown Amazon format {version!r}; use one of {VERSIONS}")
  if not category:
    raise UserError(
        f"domain {name!r}: format {version} needs a category, e.g. "
        f"--config.data.sources.{name}.category=Books"
    )
  review_names, meta_names = file_names(version, category)
  reviews_path = files.find_file(directory, review_names, f"the {version} review file")
  meta_path = files.find_file(directory, meta_names, f"the {version} metadata file")
  builder = RawDomainBuilder(name, unknown_items=unknown_items)
  for line, text in files.lines(reviews_path, every_s=every_s):
    if not text.strip():
      continue
    at = files.where(reviews_path, line)
    record = _parse_record(text, at)
    builder.add_interaction(
        str(_field(record, "reviewerID", at)).strip(),
        str(_field(record, "asin", at)).strip(),
        _number(record, "unixReviewTime", at),
        _number(record, "overall", at),
        where=at,
    )
  for line, text in files.lines(meta_path, every_s=every_s):
    if not text.strip():
      continue
    at = files.where(meta_path, line)
    record = _parse_record(text, at)
    asin = str(_field(record, "asin", at)).strip()
    # Unreviewed items are not needed; the 2018 metadata repeats some items: first wins.
    if not builder.has_item(asin) or builder.has_title(asin):
      continue
    title = html.unescape(str(record.get("title") or ""))
    description = _description(record.get("description"), max_description_chars)
    builder.add_item(asin, " ".join(title.split()), description, where=at)
  return builder.build(sort_by_time=True)
