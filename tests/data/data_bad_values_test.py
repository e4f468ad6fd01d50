"""Bad values in canonical files: each an error naming the right file and line (SPEC §1)."""

import gzip

import pytest
from data_fixtures import write_canonical, write_gz

from sfubm_jax.data.canonical import read_canonical
from sfubm_jax.errors import UserError

ITEMS = [(f"k{i}", f"Thing {i}", "desc") for i in range(6)]
HEAD = "user_id,item_id,timestamp,rating\n"


@pytest.mark.parametrize("row,what", [
    ("u1,k2,3,nan", "rating 'nan'"), ("u1,k2,3,inf", "rating 'inf'"),
    ("u1,k2,-Infinity,5", "timestamp '-Infinity'"), ("u1,k2,NaN,4", "timestamp 'NaN'")])
def test_nan_and_inf_are_errors_with_file_and_line(tmp_path, row, what):
  write_canonical(tmp_path, ITEMS, [])
  write_gz(tmp_path / "interactions.csv.gz", HEAD + "u1,k1,1,5\n" + row + "\n")
  with pytest.raises(UserError, match="not a finite number") as e:
    read_canonical("shop", tmp_path)
  assert str(e.value).startswith(f"{tmp_path / 'interactions.csv.gz'}:3: {what}")


def test_decoding_error_names_the_line(tmp_path):
  write_canonical(tmp_path, ITEMS, [])
  path = tmp_path / "interactions.csv.gz"
  with gzip.open(path, "wb") as f:
    f.write((HEAD + "u1,k1,1,5\nu1,k2,2,5\n").encode() + b"u\xff1,k3,3,5\n")
  with pytest.raises(UserError) as e:
    read_canonical("shop", tmp_path)
  assert str(e.value) == (f"{path}:4: not utf-8 text (invalid start byte at byte 2 of "
                          f"the line)")


def test_unclosed_quote_blames_the_item_file_and_its_line(tmp_path):
  write_canonical(tmp_path, ITEMS, [("u1", "k1", "1", "5"), ("u1", "k5", "2", "5")])
  text = ('item_id,title,description\nk0,Thing 0,d\nk1,"Thing 1,d\nk2,Thing 2,d\n'
          'k3,Thing 3,d\nk4,Thing 4,d\nk5,Thing 5,d\n')
  write_gz(tmp_path / "items.csv.gz", text)
  with pytest.raises(UserError) as e:
    read_canonical("shop", tmp_path)
  assert str(e.value).startswith(f"{tmp_path / 'items.csv.gz'}:3: malformed CSV")


def test_quoted_newlines_still_read_and_lines_count_rows_starts(tmp_path):
  text = 'item_id,title,description\nk0,"Two\nlines",d\nk1,Thing 1,""\n'
  write_canonical(tmp_path, [], [("u1", "k0", "1", "5"), ("u1", "k1", "2", "5")])
  write_gz(tmp_path / "items.csv.gz", text)
  raw = read_canonical("shop", tmp_path)
  assert raw.titles == ["Two\nlines", "Thing 1"]


def test_backwards_timestamps_within_a_user_are_an_error(tmp_path):
  rows = [("u1", "k1", "10", "5"), ("u2", "k1", "1", "5"), ("u1", "k2", "10", "5"),
          ("u1", "k3", "9", "5")]
  write_canonical(tmp_path, ITEMS, rows)
  with pytest.raises(UserError, match="earlier than 10 on line 4") as e:
    read_canonical("shop", tmp_path)
  assert str(e.value).startswith(f"{tmp_path / 'interactions.csv.gz'}:5: user 'u1'")
  # Equal times and missing times are fine.
  write_canonical(tmp_path, ITEMS, rows[:3] + [("u1", "k3", "", "5"), ("u1", "k4", "10", "")])
  assert read_canonical("shop", tmp_path).num_interactions == 5
