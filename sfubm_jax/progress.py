"""Progress bars: one terminal line per long loop, and log lines every few seconds.

On a terminal the bar redraws in place (`\r`) with count, rate, ETA and the loop's
current metrics; when the loop ends it leaves one final line. When the terminal is a
file or pipe, only that final line is written. A loop that ends within `min_s`
seconds leaves nothing on the terminal. Every `every_s` seconds the state is also logged
(absl INFO, so it lands in DIR/log.txt).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from absl import logging

from sfubm_jax import console

T = TypeVar("T")
WIDTH = 20  # characters of the bar itself


def _duration(seconds: float) -> str:
  s = int(round(seconds))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _metric(v) -> str:
  return f"{v:.4f}" if isinstance(v, float) else str(v)


class Bar:
  """A progress bar over `total` units (None = unknown)."""

  def __init__(self, desc: str, total: int | None = None, *, every_s: float = 5.0,
               min_s: float = 1.0, unit: str = "it"):
    self.desc, self.total, self.unit = desc, total, unit
    self.every_s, self.min_s = every_s, min_s
    self.count = 0
    self.metrics: dict[str, object] = {}
    self.start = self._last_log = self._last_draw = time.monotonic()
    self._tty = console.terminal().isatty()
    self._drawn = False

  def line(self, *, final: bool = False) -> str:
    elapsed = time.monotonic() - self.start
    rate = self.count / max(elapsed, 1e-9)
    if self.total:
      done = min(self.count / self.total, 1.0)
      fill = int(round(done * WIDTH))
      head = f"{self.desc} |{'█' * fill}{' ' * (WIDTH - fill)}| {self.count}/{self.total}"
    else:
      head = f"{self.desc} {self.count}"
    tail = f" [{_duration(elapsed)}, {rate:.1f} {self.unit}/s"
    if not final and self.total:  # no rate before the first step: no estimate yet
      eta = _duration((self.total - self.count) / rate) if self.count else "?"
      tail += f", eta {eta}"
    tail += "]"
    extra = " ".join(f"{k} {_metric(v)}" for k, v in self.metrics.items())
    return head + tail + (f" {extra}" if extra else "")

  def update(self, n: int = 1, **metrics) -> None:
    self.count += n
    self.set(**metrics)

  def set(self, **metrics) -> None:
    self.metrics.update(metrics)
    now = time.monotonic()
    if now - self._last_log >= self.every_s:
      self._last_log = now
      logging.info("%s", self.line())
    if self._tty and now - self._last_draw >= 0.2 and now - self.start >= self.min_s:
      self._last_draw = now
      self._draw(self.line())

  def _draw(self, text: str, end: str = "") -> None:
    stream = console.terminal()
    stream.write("\r" + text + "\x1b[K" + end)
    stream.flush()
    self._drawn = True

  def close(self, **metrics) -> None:
    self.metrics.update(metrics)
    text = self.line(final=True)
    logging.info("%s", text)
    if time.monotonic() - self.start >= self.min_s:
      if self._tty:
        self._draw(text, "\n")
      else:
        stream = console.terminal()
        stream.write(text + "\n")
        stream.flush()
    elif self._drawn:
      self._draw("")

  def __enter__(self) -> Bar:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "",
             every_s: float = 5.0, metrics: Mapping | None = None) -> Iterator[T]:
  """Yields `items` under a Bar; `metrics` (a dict the loop updates) is shown beside it."""
  if total is None and hasattr(items, "__len__"):
    total = len(items)  # type: ignore[arg-type]
  bar = Bar(desc, total, every_s=every_s)
  try:
    for item in items:
      yield item
      bar.update(1, **(metrics or {}))
  finally:
    bar.close(**(metrics or {}))
