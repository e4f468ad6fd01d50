"""Readers: canonical, Amazon 2014/2018 and MovieLens .dat/.csv on hand-written files."""

import gzip
import json
import math

import pytest
from data_fixtures import csv_text, write_amazon2014, write_amazon2018, write_canonical, write_gz

from sfubm_jax.data.amazon import read_amazon
from sfubm_jax.data.canonical import read_canonical
from sfubm_jax.data.movielens import read_movielens
from sfubm_jax.errors import UserError


def per_user(raw):
  """{user id: [(item id, timestamp, rating), ...]} in the RawDomain's order."""
  out = {}
  for u, i, t, r in zip(raw.user, raw.item, raw.timestamp, raw.rating):
    t = None if math.isnan(t) else float(t)
    r = None if math.isnan(r) else float(r)
    out.setdefault(raw.user_ids[u], []).append((raw.item_ids[i], t, r))
  # Rows are grouped: each user's rows are contiguous and users ascend.
  assert list(raw.user) == sorted(raw.user)
  assert list(out) == raw.user_ids
  return out


def catalogue(raw):
  return {i: (t, d) for i, t, d in zip(raw.item_ids, raw.titles, raw.descriptions)}


REVIEWS = [  # Real dumps are ordered by item, not by user or time.
    {"reviewerID": "U1", "asin": "B", "overall": 5.0, "unixReviewTime": 200, "summary": "x"},
    {"reviewerID": "U2", "asin": "A", "overall": 2.0, "unixReviewTime": 100},
    {"reviewerID": "U1", "asin": "A", "overall": 4.0, "unixReviewTime": 100},
    {"reviewerID": "U1", "asin": "C", "overall": 3.0, "unixReviewTime": 100},
    {"reviewerID": "U2", "asin": "C", "overall": 1.0, "unixReviewTime": 50},
]
EXPECTED_AMAZON = {  # Stable time sort: A and C tie at 100 and keep the file order.
    "U1": [("A", 100.0, 4.0), ("C", 100.0, 3.0), ("B", 200.0, 5.0)],
    "U2": [("C", 50.0, 1.0), ("A", 100.0, 2.0)],
}


def test_amazon2014_reviews_json_meta_python_literals(tmp_path):
  meta = [
      {"asin": "Z", "title": "Never reviewed", "categories": [["Books"]]},
      {"asin": "A", "title": "Alpha &amp; Omega", "description": "First  book.",
       "related": {"also_bought": ["B"]}, "price": 3.5},
      {"asin": "B", "title": "Beta's \"Guide\"", "description": "<b>bold</b> &amp; more"},
      {"asin": "C", "title": "Gamma", "salesRank": {"Books": 5}},
  ]
  write_amazon2014(tmp_path, "Books", REVIEWS, meta)
  raw = read_amazon("books", tmp_path, version="amazon2014", category="Books")
  assert per_user(raw) == EXPECTED_AMAZON
  assert catalogue(raw) == {  # Unreviewed items are not kept; HTML entities unescaped.
      "A": ("Alpha & Omega", "First book."),
      "B": ("Beta's \"Guide\"", "<b>bold</b> & more"),
      "C": ("Gamma", ""),
  }
  # The 2014 meta lines really are Python literals (single quotes), not JSON.
  first = gzip.open(tmp_path / "meta_Books.json.gz", "rt").readline()
  assert first.startswith("{'asin': 'Z'")


def test_amazon2018_json_meta_description_list_and_duplicates(tmp_path):
  meta = [
      {"asin": "A", "title": "Alpha", "description": ["Line one.", " ", "Line two."]},
      {"asin": "A", "title": "Alpha duplicate", "description": []},  # 2018 repeats items
      {"asin": "B", "title": "  Beta   spaced ", "description": "plain"},
      {"asin": "C", "title": "Gamma"},
  ]
  write_amazon2018(tmp_path, "Books", REVIEWS, meta)
  raw = read_amazon("books", tmp_path, version="amazon2018", category="Books",
                    max_description_chars=12)
  assert per_user(raw) == EXPECTED_AMAZON
  assert catalogue(raw) == {
      "A": ("Alpha", "Line one. Li"),  # list joined, cut to max_description_chars
      "B": ("Beta spaced", "plain"),
      "C": ("Gamma", ""),
  }


def test_amazon_untitled_items_error_or_drop(tmp_path):
  meta = [{"asin": "A", "title": "Alpha"}, {"asin": "B"}, {"asin": "C", "title": "Gamma"}]
  write_amazon2018(tmp_path, "Books", REVIEWS, meta)
  with pytest.raises(UserError, match=r"meta_Books\.json\.gz:2: item 'B' has an empty title"):
    read_amazon("books", tmp_path, version="amazon2018", category="Books")
  raw = read_amazon("books", tmp_path, version="amazon2018", category="Books",
                    unknown_items="drop")
  assert per_user(raw) == {
      "U1": [("A", 100.0, 4.0), ("C", 100.0, 3.0)],
      "U2": [("C", 50.0, 1.0), ("A", 100.0, 2.0)],
  }
  assert raw.dropped == {"unknown_or_untitled_item": 1}
  # An item absent from the metadata: the error names the review line that used it first.
  write_amazon2018(tmp_path, "Books", REVIEWS, [{"asin": "A", "title": "Alpha"}])
  with pytest.raises(UserError, match=r"Books\.json\.gz:1: interaction names item 'B'"):
    read_amazon("books", tmp_path, version="amazon2018", category="Books")


def test_amazon_malformed_rows_name_file_and_line(tmp_path):
  write_amazon2014(tmp_path, "Beauty", REVIEWS, [{"asin": "A", "title": "Alpha"}])
  path = tmp_path / "reviews_Beauty.json.gz"
  lines = [*(json.dumps(r) for r in REVIEWS[:2]), '{"reviewerID": "U9", "asin"']
  write_gz(path, "\n".join(lines) + "\n")
  with pytest.raises(UserError, match=r"reviews_Beauty\.json\.gz:3: malformed row"):
    read_amazon("beauty", tmp_path, version="amazon2014", category="Beauty")
  write_gz(path, '{"reviewerID": "U9", "asin": "A", "overall": 5.0}\n')
  with pytest.raises(UserError, match=r":1: malformed row, field 'unixReviewTime' is missing"):
    read_amazon("beauty", tmp_path, version="amazon2014", category="Beauty")
  with pytest.raises(UserError, match="needs a category"):
    read_amazon("beauty", tmp_path, version="amazon2014", category="")


def test_movielens_dat_latin1_sorted_stably_by_time(tmp_path):
  movies = "1::Toy Story (1995)::Animation|Children's\n2::Amélie (2001)::Comedy|Romance\n" \
           "3::Heat (1995)::Action\n"
  ratings = "7::1::5::300\n7::2::4::100\n7::3::3::300\n5::3::2::10\n"
  (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
  (tmp_path / "ratings.dat").write_bytes(ratings.encode("latin-1"))
  raw = read_movielens("movielens", tmp_path)
  assert per_user(raw) == {
      "7": [("2", 100.0, 4.0), ("1", 300.0, 5.0), ("3", 300.0, 3.0)],
      "5": [("3", 10.0, 2.0)],
  }
  assert catalogue(raw)["2"] == ("Amélie (2001)", "Genres: Comedy, Romance")
  assert catalogue(raw)["1"] == ("Toy Story (1995)", "Genres: Animation, Children's")


def test_movielens_csv_quoted_titles(tmp_path):
  write_gz(tmp_path / "movies.csv.gz", "")  # Not a name the reader looks for: ignored.
  (tmp_path / "movies.csv").write_text(csv_text([
      ("movieId", "title", "genres"),
      ("10", "American President, The (1995)", "Comedy|Drama|Romance"),
      ("20", "Misérables, Les (1995)", "(no genres listed)"),
  ]), encoding="utf-8")
  (tmp_path / "ratings.csv").write_text(csv_text([
      ("userId", "movieId", "rating", "timestamp"),
      ("1", "20", "3.5", "964982703"), ("1", "10", "4.0", "964981247"),
  ]), encoding="utf-8")
  raw = read_movielens("movielens", tmp_path)
  assert per_user(raw) == {"1": [("10", 964981247.0, 4.0), ("20", 964982703.0, 3.5)]}
  assert catalogue(raw) == {
      "10": ("American President, The (1995)", "Genres: Comedy, Drama, Romance"),
      "20": ("Misérables, Les (1995)", "Genres: (no genres listed)"),
  }
  (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,99,4,5\n")
  with pytest.raises(UserError, match=r"ratings\.csv:2: rating names movie '99'"):
    read_movielens("movielens", tmp_path)


def test_canonical_file_order_is_authoritative(tmp_path):
  items = [("i1", "One", ""), ("i2", "Two &amp; kept as is", "d2"), ("i3", "Three", "")]
  rows = [  # u1's rows are split by u2's and two share a time: kept in file order.
      ("u1", "i3", "100", ""),
      ("u2", "i1", "", "4.5"),
      ("u1", "i1", "500", "2"),
      ("u2", "i2", "", ""),
      ("u1", "i2", "500", "5"),
  ]
  raw = read_canonical("d", write_canonical(tmp_path, items, rows))
  assert per_user(raw) == {
      "u1": [("i3", 100.0, None), ("i1", 500.0, 2.0), ("i2", 500.0, 5.0)],
      "u2": [("i1", None, 4.5), ("i2", None, None)],
  }
  assert catalogue(raw)["i2"] == ("Two &amp; kept as is", "d2")


def test_canonical_reads_shipped_movielens_like_the_raw_reader(repo_root):
  """The shipped canonical MovieLens equals what the .csv reader makes of its first rows."""
  raw = read_canonical("movielens", repo_root / "third_party/datasets/movielens")
  assert len(raw.user_ids) == 610 and raw.num_interactions == 100836
  assert catalogue(raw)["1"] == (
      "Toy Story (1995)", "Genres: Adventure, Animation, Children, Comedy, Fantasy"
  )
  first = per_user(raw)["1"]
  assert [t for _, t, _ in first] == sorted(t for _, t, _ in first)  # chronological


def test_canonical_header_and_duplicate_items(tmp_path):
  write_canonical(tmp_path / "a", [("i1", "One", ""), ("i1", "Again", "")], [("u", "i1", "", "")])
  with pytest.raises(UserError, match=r"items\.csv\.gz:3: item 'i1' is listed twice"):
    read_canonical("d", tmp_path / "a")
  write_gz(tmp_path / "b" / "items.csv.gz", "id,name\ni1,One\n")
  write_gz(tmp_path / "b" / "interactions.csv.gz", "user_id,item_id,timestamp,rating\n")
  with pytest.raises(UserError, match=r"items\.csv\.gz:1: expected a header starting with"):
    read_canonical("d", tmp_path / "b")
