"""Progress reporting through absl logging (a log line every few seconds)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from absl import logging

T = TypeVar("T")


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str = "", every_s: float = 5.0
) -> Iterator[T]:
  """Yields `items`, logging `desc: i/total (rate/s, eta)` at most every `every_s` seconds."""
  if total is None and hasattr(items, "__len__"):
    total = len(items)  # type: ignore[arg-type]
  start = last = time.monotonic()
  i = 0
  for i, item in enumerate(items, 1):
    yield item
    now = time.monotonic()
    if now - last >= every_s:
      last = now
      rate = i / max(now - start, 1e-9)
      if total:
        eta = (total - i) / max(rate, 1e-9)
        logging.info("%s: %d/%d (%.1f/s, eta %.0fs)", desc, i, total, rate, eta)
      else:
        logging.info("%s: %d (%.1f/s)", desc, i, rate)
  if time.monotonic() - start >= every_s:
    logging.info("%s: done, %d in %.1fs", desc, i, time.monotonic() - start)
