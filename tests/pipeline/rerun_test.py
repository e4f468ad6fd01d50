"""A finished workdir rerun with `llm.valid_rule=contains` re-scores in `eval` alone.

Runs the tiny config's data, llm and eval stages (variant llm_only, as the resume test
does, so it needs no Stage 1 model), then reruns it with the looser rule: the terminal
says that only eval reruns and why, nothing is decoded or trained again, the eval marker
records the new rule and results.json is rewritten from the saved generations.
"""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--config=configs/tiny.py", "--stages=data,llm,eval",
        "--config.llm.variants=('llm_only',)"]


def _run(workdir, *extra):
  cmd = [sys.executable, "-m", "sfubm_jax.main", f"--workdir={workdir}", *ARGS, *extra]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
  return proc.stdout + proc.stderr


def _mtimes(folder):
  return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_valid_rule_change_reruns_eval_only(tmp_path):
  workdir = tmp_path / "w"
  first = _run(workdir)
  assert len(first.splitlines()) <= 40, first
  assert "Orbax" not in first and "checkpoint_manager" not in first
  assert "checkpoint_manager" in (workdir / "log.txt").read_text()  # the rest is logged
  llm_files, chunks = _mtimes(workdir / "llm"), _mtimes(workdir / "eval" / "food")
  marker = json.loads((workdir / "eval" / "COMPLETE").read_text())
  assert marker["reads"]["llm.valid_rule"] == "exact"
  results_before = (workdir / "results.json").stat().st_mtime_ns
  report = (workdir / "report.md").read_text().split("\n\n")
  assert report[1].startswith("![Hit@1 per method on food beside the paper's Table 2]")
  assert (workdir / "report_plots" / "hit1.png").exists()
  assert "llm_only,food,hit@1," in (workdir / "results.csv").read_text()

  again = _run(workdir, "--config.llm.valid_rule=contains")
  lines = again.splitlines()
  assert "eval: rerun, changed llm.valid_rule 'exact' -> 'contains'" in lines, again
  assert any("data: finished earlier, skipped" in x for x in lines), again
  assert any("llm: finished earlier, skipped" in x for x in lines), again
  assert not any(x.startswith(("data: ", "llm: ")) for x in lines), again
  assert _mtimes(workdir / "llm") == llm_files  # nothing retrained
  assert _mtimes(workdir / "eval" / "food") == chunks  # nothing decoded again
  marker = json.loads((workdir / "eval" / "COMPLETE").read_text())
  assert marker["reads"]["llm.valid_rule"] == "contains"
  assert (workdir / "results.json").stat().st_mtime_ns > results_before
  assert json.loads((workdir / "config.json").read_text())["llm"]["valid_rule"] == "contains"

  third = _run(workdir, "--config.llm.valid_rule=contains", "--config.runtime.checkpoint_every=7")
  plan_lines = [x for x in third.splitlines() if x.split(":")[0] in ("data", "llm", "eval")]
  assert plan_lines == [], third  # runtime fields rerun nothing
  assert third.count("finished earlier, skipped") == 3, third
