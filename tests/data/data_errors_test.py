"""Bad input (issue item 8): one clear `error:` line, exit code 2, no output left behind."""

import pathlib
import subprocess
import sys

import pytest
from data_fixtures import synthetic_canonical, write_canonical, write_gz

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_data_stage(workdir, *overrides, cwd=None):
  cmd = [sys.executable, "-m", "sfubm_jax.main", f"--config={REPO / 'configs/tiny.py'}",
         f"--workdir={workdir}", "--stages=data", *overrides]
  return subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True, timeout=120)


def kitchen_items():
  return [(f"k{i}", f"Kitchen thing {i}", "") for i in range(40)]


def kitchen_rows():
  return [(f"u{u}", f"k{(u * 7 + k) % 40}", str(k), "5") for u in range(30) for k in range(6)]


def write_bad(kind, d):
  """Writes a kitchen folder with one defect; returns (source path, expected message)."""
  if kind == "missing_file":
    write_canonical(d, kitchen_items(), kitchen_rows())
    (d / "interactions.csv.gz").unlink()
    return d, f"missing the interaction file: none of interactions.csv.gz, interactions.csv in {d}"
  if kind == "malformed_row":
    write_canonical(d, kitchen_items(), kitchen_rows())
    text = "user_id,item_id,timestamp,rating\nu1,k1,1,5\nu1,k2,2,5\nu1,k3\n"
    write_gz(d / "interactions.csv.gz", text)
    return d, f"{d / 'interactions.csv.gz'}:4: malformed row, expected 4 fields"
  if kind == "bad_number":
    write_canonical(d, kitchen_items(), [("u1", "k1", "yesterday", "5")])
    return d, f"{d / 'interactions.csv.gz'}:2: malformed timestamp 'yesterday'"
  if kind == "unknown_item":
    write_canonical(d, kitchen_items(), [*kitchen_rows()[:7], ("u9", "nope", "1", "5")])
    return d, f"{d / 'interactions.csv.gz'}:9: interaction names item 'nope'"
  if kind == "empty_title":
    items = kitchen_items()
    items[1] = ("k1", "   ", "a description")
    write_canonical(d, items, kitchen_rows())
    return d, f"{d / 'items.csv.gz'}:3: item 'k1' has an empty title"
  if kind == "zip_file":
    d.mkdir(parents=True)
    (d / "kitchen.zip").write_bytes(b"PK\x03\x04")
    return d / "kitchen.zip", f"{d / 'kitchen.zip'}: unsupported file type"
  if kind == "parquet_files":
    d.mkdir(parents=True)
    (d / "items.parquet").write_bytes(b"PAR1")
    return d, f"{d / 'items.parquet'}: unsupported file type"
  if kind == "not_gzip":
    write_canonical(d, kitchen_items(), kitchen_rows())
    (d / "items.csv.gz").write_text("item_id,title,description\n")
    return d, f"{d / 'items.csv.gz'}: not a gzip file"
  raise ValueError(kind)


@pytest.fixture(scope="module")
def food(tmp_path_factory):
  d = tmp_path_factory.mktemp("food")
  return synthetic_canonical(d, num_users=120, num_items=70, seed=1, prefix="f")


def assert_clean_failure(result, workdir, message):
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr
  assert message in errors[0]
  data = pathlib.Path(workdir) / "data"
  assert not data.exists() or not any(data.iterdir()), list(data.iterdir())


@pytest.mark.parametrize("kind", ["missing_file", "malformed_row", "bad_number", "unknown_item",
                                  "empty_title", "zip_file", "parquet_files", "not_gzip"])
def test_bad_input_files(tmp_path, food, kind):
  path, message = write_bad(kind, tmp_path / "kitchen")
  workdir = tmp_path / "w"
  result = run_data_stage(workdir, f"--config.data.sources.food.path={food}",
                          f"--config.data.sources.kitchen.path={path}")
  assert_clean_failure(result, workdir, message)


def test_bad_config(tmp_path):
  result = run_data_stage(tmp_path / "w1", "--config.data.nosuchfield=1")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "error: unknown config field 'nosuchfield' in --config.data.nosuchfield=1" in (
      result.stderr
  )
  assert not (tmp_path / "w1").exists()
  cases = [
      ("--config.data.sources.kitchen.format=parquet",
       "config.data.sources.kitchen.format='parquet' is not supported"),
      ("--config.data.min_user_len=2", "data.min_user_len must be >= 3"),
      ("--config.data.unknown_items=skip", "data.unknown_items='skip' is not one of"),
      ("--config.data.sources.kitchen.path=no/such/dir",
       "relative path 'no/such/dir' exists neither in the current directory"),
      ("--config.data.sources.kitchen.format=amazon2018", "path is empty; format amazon2018"),
  ]
  for k, (override, message) in enumerate(cases):
    workdir = tmp_path / f"w{k + 2}"
    assert_clean_failure(run_data_stage(workdir, override), workdir, message)
