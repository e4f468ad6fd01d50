"""What a run shows on the terminal, and where everything else goes.

A run prints stage banners, one progress bar per long loop, the data table, the privacy
line and the results; `say` writes those. `to_log_file(path)` sends everything else that
the process writes to stdout or stderr (absl/Orbax/JAX/transformers logging, warnings,
native XLA messages) to `path` by pointing file descriptors 1 and 2 at it; absl log
lines there carry timestamps. Without it (`--verbose`, tests, library use) the terminal
is stdout and nothing is redirected.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import time
from typing import TextIO

from absl import logging

_terminal: TextIO | None = None  # set by to_log_file: the terminal's stdout
_errors: TextIO | None = None  # set by to_log_file: the terminal's stderr
_log_path: str | None = None


def terminal() -> TextIO:
  return _terminal or sys.stdout


def is_redirected() -> bool:
  return _terminal is not None


def log_path() -> str | None:
  return _log_path


def say(text: str = "") -> None:
  """A line (or lines) for the user; also logged, so the log file holds the whole story."""
  if is_redirected():
    logging.info("%s", text)
  stream = terminal()
  stream.write(text + "\n")
  stream.flush()


def banner(index: int, total: int, stage: str, what: str) -> None:
  say(f"── [{index}/{total}] {stage}: {what}")


def error(text: str) -> None:
  """`error: text` on the terminal's stderr (and in the log file, if any)."""
  if is_redirected():
    logging.error("%s", text)
  stream = _errors or sys.stderr
  stream.write(f"error: {text}\n")
  stream.flush()


def to_log_file(path: os.PathLike | str) -> None:
  """Points stdout and stderr (fds 1 and 2) at `path`; the terminal stays reachable here."""
  global _terminal, _errors, _log_path
  if _terminal is not None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  _terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
  _errors = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
  fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)
  _log_path = str(path)
  logging.set_verbosity(logging.INFO)
  std_logging.captureWarnings(True)  # Python warnings as timestamped log lines too
  logging.info("log of pid %d started %s", os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S"))
