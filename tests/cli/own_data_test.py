"""Your own data without editing the package: any domain names, per-domain sources, nouns.

Runs the README's "Your own data" example (the shipped food/kitchen files under the new
names arts/office) at the tiny size, data stage only, and checks it against the same
files read under their own names: the same raw data and preprocessing counts (the user
sample itself is seeded by the domain name, so it differs).
"""

import json
import pathlib

from cli_errors_test import run_main
from conftest import load_config

from sfubm_jax import cli, config_check, report

REPO = pathlib.Path(__file__).resolve().parents[2]
OWN = ["--config=configs/pair.py:arts,office,tiny",
       "--config.data.sources.arts.path=third_party/datasets/food",
       "--config.data.sources.office.path=third_party/datasets/kitchen",
       "--config.llm.item_noun.arts=art supplies"]


def test_unknown_domains_get_defaults():
  c = load_config("pair", "arts,office")
  assert c.pair == "arts_office" and c.domains == ("arts", "office")
  assert dict(c.data.max_users) == {"arts": 0, "office": 0}  # keep all at paper size
  assert dict(c.llm.item_noun) == {"arts": "items", "office": "items"}
  assert (c.server.num_clusters, c.privacy.noise_scale, c.data.min_user_len) == (100, 0.1, 5)
  assert c.llm.domains == ("arts",)
  config_check.check(c)
  cpu = load_config("pair", "arts,office,cpu")
  cap = load_config("food_kitchen", "cpu").data.max_users.food  # a paper count is kept
  assert cap == 12689
  assert set(dict(cpu.data.max_users).values()) == {10000}  # 0 (keep all) is capped
  three = load_config("pair", "arts,office,toys")
  assert three.domains == ("arts", "office", "toys") and "toys" in three.data.sources


def test_paper_pair_through_pair_py_keeps_paper_settings():
  a, b = load_config("pair", "food,kitchen,cpu"), load_config("food_kitchen", "cpu")
  assert a.to_json_best_effort(sort_keys=True) == b.to_json_best_effort(sort_keys=True)
  assert load_config("tiny", "health,beauty").data.min_user_len == 3


def test_paper_columns_only_for_paper_pairs():
  res = {"sfubm": {"arts": {"hit@1": 0.25, "valid_ratio": 1.0}}}
  own = report.table2(res, "arts_office", "arts")
  assert "Paper SF-UBM Valid" not in own and "0.4144" not in own
  assert "0.3662" in report.table2(res, "food_kitchen", "arts")


def test_readme_example_reads_the_shipped_files_under_new_names(tmp_path):
  own, ref = tmp_path / "own", tmp_path / "ref"
  for workdir, args in ((own, OWN), (ref, ["--config=configs/tiny.py"])):
    proc = run_main(workdir, *args, "--stages=data")
    assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads((own / "data" / "stats.json").read_text())
  want = json.loads((ref / "data" / "stats.json").read_text())
  for new, old in (("arts", "food"), ("office", "kitchen")):
    for key in ("raw", "after_rating_filter", "after_min_len"):
      assert got[new]["preprocessing"][key] == want[old]["preprocessing"][key], (new, key)
    assert got[new]["users"] == want[old]["users"] == 60  # tiny caps keep-all
    assert got[new]["paper"] is None and want[old]["paper"] is not None
  saved = json.loads((own / "config.json").read_text())
  assert saved["llm"]["item_noun"] == {"arts": "art supplies", "office": "items"}
  items = json.loads((own / "data" / "arts" / "items.json").read_text())
  assert any(str(x).startswith("arts:") for x in json.dumps(items).split('"'))


def test_a_user_config_file_outside_the_repo_imports_configs_common(tmp_path, monkeypatch):
  path = tmp_path / "mine.py"
  path.write_text("from configs import common\n\n\ndef get_config(arg=None):\n"
                  "  config = common.from_arg(arg, default_domains=('arts', 'office'))\n"
                  "  config.data.sources.arts.path = '/data/arts'\n  return config\n")
  monkeypatch.chdir(tmp_path)
  c = cli.load_config_file(f"{path}:cpu")
  assert c.domains == ("arts", "office") and c.variant == "cpu"
  assert c.data.sources.arts.path == "/data/arts"
