"""Choice fields are checked before any stage runs, against the implementing modules."""

import os
import subprocess
import sys

import pytest
from conftest import REPO, load_config

from sfubm_jax import config_check
from sfubm_jax.errors import UserError


@pytest.mark.parametrize("pair,arg", [(p, a) for p in ("food_kitchen", "health_beauty",
                                                        "books_movielens") for a in (None, "cpu")]
                         + [("tiny", None)])
def test_shipped_configs_pass(pair, arg):
  config_check.check(load_config(pair, arg))


def test_every_bad_choice_is_named():
  config = load_config("tiny")
  config.llm.valid_rule = "exactly"
  config.fkd.teacher = "frozen"
  config.llm.variants = ("sfubm", "llm_ony")
  with pytest.raises(UserError) as e:
    config_check.check(config)
  msg = str(e.value)
  for part in ("config.llm.valid_rule: 'exactly'", "config.fkd.teacher: 'frozen'",
               "config.llm.variants: 'llm_ony'", "'contains'", "'joint'"):
    assert part in msg


def test_a_ranking_budget_of_zero_is_named():
  config = load_config("tiny")
  config.llm.eval_memory_gb = 0.0
  with pytest.raises(UserError, match=r"config\.llm\.eval_memory_gb: 0\.0 must be > 0"):
    config_check.check(config)


def test_zero_length_buckets_are_named():
  config = load_config("tiny")
  config.llm.max_buckets = 0
  with pytest.raises(UserError, match=r"config\.llm\.max_buckets: 0 < 1"):
    config_check.check(config)


def test_each_checked_field_exists_in_the_config():
  config = load_config("food_kitchen")
  for path in config_check.choices():
    node = config
    for key in path.removesuffix("[]").split("."):
      node = node[key]  # KeyError: the check names a field the config lacks


def test_main_refuses_before_writing_the_workdir(tmp_path):
  workdir = tmp_path / "w"
  env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
  proc = subprocess.run(
      [sys.executable, "-m", "sfubm_jax.main", "--config=configs/tiny.py",
       f"--workdir={workdir}", "--config.llm.train_targets=every"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert "config.llm.train_targets: 'every' is not one of ['last', 'all']" in proc.stderr
  assert not workdir.exists()
