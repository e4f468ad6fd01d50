"""Opening dataset files for streaming: gzip or plain text, line by line, with progress.

Multi-GB review dumps are never loaded whole: every reader iterates `lines(path)`,
which decompresses on the fly and yields `(line_number, text)`. Errors name the file
(and the line, through `where`) so that a user can find the bad row.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import pathlib
from collections.abc import Iterator, Sequence

from sfubm_jax.errors import UserError
from sfubm_jax.progress import progress

# File endings the readers open (anything else is an unsupported file type).
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".json", ".json.gz", ".dat", ".dat.gz")


def where(path: pathlib.Path, line: int) -> str:
  """'file:line' for error messages."""
  return f"{path}:{line}"


def check_suffix(path: pathlib.Path) -> None:
  if not path.name.endswith(SUPPORTED_SUFFIXES):
    raise UserError(
        f"{path}: unsupported file type; the readers take {', '.join(SUPPORTED_SUFFIXES)}"
    )


def find_file(directory: pathlib.Path, names: Sequence[str], what: str) -> pathlib.Path:
  """The first of `names` that exists in `directory`, else an error listing them."""
  if not directory.is_dir():
    if directory.exists():
      raise UserError(
          f"{directory}: unsupported file type (a file, not a directory); point the source "
          f"path at the folder that holds {' or '.join(names)}"
      )
    raise UserError(f"data directory {directory} does not exist (looking for {what})")
  for name in names:
    if (directory / name).is_file():
      return directory / name
  stems = {n.split(".")[0] for n in names}
  others = sorted(p.name for p in directory.iterdir() if p.name.split(".")[0] in stems)
  if others:
    raise UserError(
        f"{directory / others[0]}: unsupported file type for {what}; the reader takes "
        f"{' or '.join(names)}"
    )
  raise UserError(f"missing {what}: none of {', '.join(names)} in {directory}")


def open_binary(path: pathlib.Path) -> io.BufferedIOBase:
  """Opens `path` for reading bytes, decompressing .gz files on the fly."""
  check_suffix(path)
  if not path.is_file():
    raise UserError(f"missing file {path}")
  if path.name.endswith(".gz"):
    with open(path, "rb") as f:
      if f.read(2) != b"\x1f\x8b":
        raise UserError(f"{path}: not a gzip file although its name ends with .gz")
    return gzip.open(path, "rb")
  return open(path, "rb")


def decoded_lines(f: io.BufferedIOBase, path: pathlib.Path, encoding: str) -> Iterator[str]:
  """The lines of a byte stream, each decoded on its own (line ending kept), so that a
  decoding error names its line and the byte offset within that line."""
  number = 0
  try:
    for number, raw in enumerate(f, 1):
      try:
        yield raw.decode(encoding)
      except UnicodeDecodeError as e:
        raise UserError(f"{where(path, number)}: not {encoding} text ({e.reason} at byte "
                        f"{e.start + 1} of the line)") from None
  except (OSError, EOFError) as e:
    raise UserError(f"{path}: cannot be read after line {number} ({e})") from None


def lines(
    path: pathlib.Path, *, encoding: str = "utf-8", every_s: float = 5.0
) -> Iterator[tuple[int, str]]:
  """Yields (1-based line number, line without its newline), logging progress."""
  with open_binary(path) as f:
    numbered = enumerate(decoded_lines(f, path, encoding), 1)
    for number, line in progress(numbered, desc=f"reading {path.name}", every_s=every_s):
      yield number, line.rstrip("\r\n")


def csv_rows(
    path: pathlib.Path, header: Sequence[str], *, encoding: str = "utf-8", every_s: float = 5.0
) -> Iterator[tuple[int, list[str]]]:
  """Yields (line number, row) of a CSV file whose first row must start with `header`.

  Rows are returned as the first len(header) fields; a row with fewer fields is an
  error naming its line. Quoting is strict: a quote left open is an error naming the
  line where its row starts (not the end of the file, nor the next file read).
  """
  with open_binary(path) as f:
    text = progress(decoded_lines(f, path, encoding), desc=f"reading {path.name}",
                    every_s=every_s)
    reader = csv.reader(text, strict=True)
    start = 1  # the line the row being read starts on
    try:
      first = next(reader, None)
      if first is None or [h.strip().lstrip("\ufeff") for h in first[: len(header)]] != list(
          header
      ):
        raise UserError(
            f"{where(path, 1)}: expected a header starting with {','.join(header)}, "
            f"got {','.join(first or [])!r}"
        )
      start = reader.line_num + 1
      for row in reader:
        if row and len(row) < len(header):
          raise UserError(
              f"{where(path, start)}: malformed row, expected {len(header)} fields "
              f"({','.join(header)}), got {len(row)}"
          )
        if row:
          yield start, row[: len(header)]
        start = reader.line_num + 1
    except csv.Error as e:
      raise UserError(f"{where(path, start)}: malformed CSV in the row starting on this line "
                      f"({e}; an unclosed quote?)") from None


def parse_float(text: str, what: str, at: str) -> float:
  """float(text); '' -> NaN (the source has none); anything else, including a written
  NaN or infinity, is an error at `at`."""
  text = text.strip()
  if not text:
    return float("nan")
  try:
    value = float(text)
  except ValueError:
    raise UserError(f"{at}: malformed {what} {text!r} (expected a number)") from None
  if not math.isfinite(value):
    raise UserError(f"{at}: {what} {text!r} is not a finite number (leave the field empty "
                    f"when the source has none)")
  return value
