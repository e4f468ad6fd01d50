"""Kill-and-resume: SIGKILL `main` mid-LLM-stage, rerun, same results as one clean run.

Runs the tiny config's data, llm and eval stages (variant llm_only, which needs no
Stage 1 model, so the test stays short) in subprocesses: once uninterrupted, once killed
as soon as the LLM stage's first Orbax checkpoint appears and then rerun. results.json
(the llm_only entry), generations.jsonl and the training-loss history must be equal, for
both LLM families (the tiny random OPT and Llama; both train through `training.trainer`).
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--config=configs/tiny.py", "--stages=data,llm,eval",
        "--config.llm.variants=('llm_only',)", "--config.llm.epochs=2"]


def _cmd(workdir, family):
  return [sys.executable, "-m", "sfubm_jax.main", f"--workdir={workdir}", *ARGS,
          f"--config.llm.family={family}"]


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _run(workdir, family):
  proc = subprocess.run(_cmd(workdir, family), cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]


def _outputs(workdir):
  res = json.loads((workdir / "results.json").read_text())
  gens = (workdir / "eval" / "generations.jsonl").read_text()
  hist = json.loads((workdir / "llm" / "food" / "llm_only" / "history.json").read_text())
  return res["llm_only"], gens, hist


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_sigkill_mid_llm_stage_then_resume_matches(tmp_path, family):
  clean, killed = tmp_path / "clean", tmp_path / "killed"
  _run(clean, family)
  proc = subprocess.Popen(_cmd(killed, family), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt = killed / "llm" / "food" / "llm_only" / "ckpt"
  deadline = time.time() + 300
  try:
    while time.time() < deadline and proc.poll() is None:
      if ckpt.exists() and any(p.name.isdigit() for p in ckpt.iterdir()):
        break
      time.sleep(0.05)
    assert proc.poll() is None, "the run ended before a checkpoint was seen"
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  assert not (killed / "llm" / "COMPLETE").exists()
  assert not (killed / "llm" / "food" / "llm_only" / "history.json").exists()
  _run(killed, family)
  got, want = _outputs(killed), _outputs(clean)
  assert got[0] == want[0]
  assert got[1] == want[1]
  assert got[2]["loss"] == want[2]["loss"] and len(want[2]["loss"]) == 2 * want[2][
      "steps_per_epoch"]
