"""The data stage end to end: CLI run, rerun, byte-identical outputs, Table 1 recount."""

import csv
import gzip
import hashlib
import os
import pathlib
import subprocess
import sys
from fractions import Fraction

import numpy as np
from conftest import load_config
from data_fixtures import write_amazon2014

from sfubm_jax import io_utils
from sfubm_jax.data import stage
from sfubm_jax.data.split import load_split

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_main(workdir, cwd):
  cmd = [sys.executable, "-m", "sfubm_jax.main", f"--config={REPO / 'configs/tiny.py'}",
         f"--workdir={workdir}", "--stages=data"]
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def digests(directory: pathlib.Path) -> dict:
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "COMPLETE"}


def test_tiny_cli_rerun_and_byte_identical(tmp_path):
  # Run from another directory: the shipped data is found under the repository root.
  first, second = tmp_path / "a", tmp_path / "b"
  result = run_main(first, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  stats = io_utils.read_json(first / "data" / "stats.json")
  for domain in ("food", "kitchen"):
    assert stats[domain]["users"] == 60
    split = load_split(first, domain)
    assert split.num_users == 60 and split.num_items == stats[domain]["items"]
    assert int(split.lengths.sum()) == stats[domain]["interactions"]
  before = digests(first / "data")
  mtimes = {p: p.stat().st_mtime_ns for p in (first / "data").rglob("*")}
  rerun = run_main(first, cwd=tmp_path)
  assert rerun.returncode == 0 and "data: finished earlier, skipped" in rerun.stdout
  assert "stage data: complete, skipped" in (first / "log.txt").read_text()
  assert {p: p.stat().st_mtime_ns for p in (first / "data").rglob("*")} == mtimes
  assert run_main(second, cwd=REPO).returncode == 0
  assert digests(second / "data") == before
  assert set(before) >= {"stats.json", "stats.md", "food/arrays.npz", "food/items.json",
                         "food/users.json", "kitchen/arrays.npz"}


def _canonical_rows(directory):
  with gzip.open(directory / "interactions.csv.gz", "rt", newline="") as f:
    return list(csv.reader(f))[1:]


def _recount(rows, min_rating, min_len, max_len):
  """Plain Python: {user: last max_len item ids} of users with >= min_len kept rows."""
  kept = {}
  for user, item, _, rating in rows:
    seq = kept.setdefault(user, [])
    if rating == "" or float(rating) >= min_rating:
      seq.append(item)
  return {u: s[-max_len:] for u, s in kept.items() if len(s) >= min_len}, kept


def test_books_movielens_stats_equal_independent_recount(tmp_path):
  config = load_config("books_movielens")
  stage.run(config, tmp_path)
  stats = io_utils.read_json(tmp_path / "data" / "stats.json")
  for domain in ("books", "movielens"):
    rows = _canonical_rows(REPO / "third_party" / "datasets" / domain)
    sequences, filtered = _recount(rows, 3.0, 5, 10)
    split = load_split(tmp_path, domain)
    target = config.data.max_users[domain]
    if len(sequences) > target:  # books: stratified sample of the paper's user count
      sizes = {}
      for user in sequences:
        s = (len(filtered[user]) - 5) // 5
        sizes[s] = sizes.get(s, 0) + 1
      total = sum(sizes.values())
      quotas = {s: int(Fraction(n * target, total)) for s, n in sizes.items()}
      kept = [u.split(":", 1)[1] for u in split.user_ids]
      per = {}
      for user in kept:
        s = (len(filtered[user]) - 5) // 5
        per[s] = per.get(s, 0) + 1
      assert len(kept) == target
      # Each stratum gets its floor quota plus at most one (largest remainder).
      assert all(per.get(s, 0) - quotas[s] in (0, 1) for s in sizes)
      sequences = {u: sequences[u] for u in kept}
    else:  # movielens: fewer users than the paper's count, all kept
      assert {u.split(":", 1)[1] for u in split.user_ids} == set(sequences)
    items = {i for s in sequences.values() for i in s}
    interactions = sum(len(s) for s in sequences.values())
    row = stats[domain]
    assert row["users"] == len(sequences)
    assert row["items"] == len(items)
    assert row["interactions"] == interactions
    assert np.isclose(row["avg_len"], interactions / len(sequences))
    assert np.isclose(row["sparsity"], 1 - interactions / (len(sequences) * len(items)))
    # And the stored sequences are those sequences.
    for uid, seq, n in zip(split.user_ids, split.seqs, split.lengths):
      got = [split.item_ids[i].split(":", 1)[1] for i in seq[len(seq) - n:]]
      assert got == sequences[uid.split(":", 1)[1]]
  assert stats["books"]["users"] == 6905 and stats["movielens"]["users"] == 608
  assert stats["books"]["paper"] == {"users": 6905, "items": 41598, "avg_len": 8.22}
  assert "| books | 6,905 |" in (tmp_path / "data" / "stats.md").read_text()


def test_stage_dispatches_raw_formats(tmp_path, monkeypatch):
  """food from MovieLens .dat, kitchen from Amazon 2014 files, via config.data.sources."""
  ml, amazon = tmp_path / "ml", tmp_path / "amazon"
  ml.mkdir()
  movies = "".join(f"{m}::Film {m} (199{m % 10})::Drama|Comedy\n" for m in range(1, 51))
  (ml / "movies.dat").write_bytes(movies.encode("latin-1"))
  ratings = "".join(f"{u}::{(u * 3 + k) % 50 + 1}::{1 + (u + k) % 5}::{1000 - k}\n"
                    for u in range(1, 41) for k in range(12))
  (ml / "ratings.dat").write_bytes(ratings.encode("latin-1"))
  reviews = [{"reviewerID": f"R{u}", "asin": f"A{(u * 5 + k) % 45}", "overall": 4.0,
              "unixReviewTime": 500 + k} for k in range(7) for u in range(30)]
  meta = [{"asin": f"A{i}", "title": f"Pan {i}", "description": f"steel {i}"}
          for i in range(45)]
  write_amazon2014(amazon, "Home_and_Kitchen", reviews, meta)
  config = load_config("tiny")
  config.data.sources.food.format = "movielens"
  config.data.sources.kitchen.format = "amazon2014"
  config.data.sources.kitchen.category = "Home_and_Kitchen"
  monkeypatch.chdir(tmp_path)  # relative source paths are looked up in the cwd first
  config.data.sources.food.path = "ml"
  config.data.sources.kitchen.path = "amazon"
  stage.run(config, tmp_path / "w")
  stats = io_utils.read_json(tmp_path / "w" / "data" / "stats.json")
  # MovieLens: ratings >= 3 are 3 of every 5 -> 7 or 8 of 12 per user; all 40 users kept.
  # Amazon: every reviewer has 7 reviews; 30 users (<= 60 kept), 7 each.
  assert stats["kitchen"]["users"] == 30 and stats["kitchen"]["interactions"] == 30 * 7
  assert stats["food"]["users"] == 40
  food = load_split(tmp_path / "w", "food")
  kitchen = load_split(tmp_path / "w", "kitchen")
  assert food.texts[1].endswith(". Genres: Drama, Comedy")
  assert kitchen.item_ids[1].startswith("kitchen:A") and kitchen.texts[1].startswith("Pan ")
  # MovieLens timestamps decrease with k: the stored order is the reverse of the file's.
  first_user = [food.item_ids[i] for i in food.seqs[0] if i]
  kept = [f"food:{(3 + k) % 50 + 1}" for k in range(12) if 1 + (1 + k) % 5 >= 3]
  assert first_user == kept[::-1][-10:]
