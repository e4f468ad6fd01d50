"""Safe workdirs: one run at a time per workdir, and a killed run's temp files go away."""

import os
import pathlib
import signal
import subprocess
import sys
import time

from cli_errors_test import TINY, assert_one_error, run_main

from sfubm_jax import workdir as workdirs

REPO = pathlib.Path(__file__).resolve().parents[2]


def _holder(workdir: pathlib.Path) -> subprocess.Popen:
  """A process that takes the workdir lock, leaves temp debris as a killed run would, waits."""
  code = (
      "import pathlib, sys, time\n"
      "from sfubm_jax import workdir\n"
      f"w = pathlib.Path({str(workdir)!r})\n"
      "workdir.lock(w)\n"
      "(w / 'data' / '.food.k3j9.tmp').mkdir(parents=True)\n"
      "(w / 'data' / '.food.k3j9.tmp' / 'arrays.npz').write_bytes(b'half')\n"
      "(w / '.results.json.x1.tmp').write_text('{')\n"
      "(w / 'pretrain' / 'ckpt' / '4.orbax-checkpoint-tmp-17').mkdir(parents=True)\n"
      "print('locked', flush=True)\n"
      "time.sleep(600)\n"
  )
  proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_second_run_fails_fast_naming_the_holder(tmp_path):
  workdir = tmp_path / "w"
  holder = _holder(workdir)
  try:
    start = time.monotonic()
    proc = run_main(workdir, TINY)
    assert_one_error(proc, f"--workdir {workdir} is in use by another run (pid {holder.pid})")
    assert time.monotonic() - start < 60
    assert not (workdir / "config.json").exists() and not (workdir / "log.txt").exists()
  finally:
    holder.kill()
    holder.wait()


def test_concurrent_starts_one_wins(tmp_path):
  workdir = tmp_path / "w"
  cmd = [sys.executable, "-m", "sfubm_jax.main", f"--workdir={workdir}", TINY,
         "--stages=data"]
  procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True) for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  codes = sorted(p.returncode for p in procs)
  assert codes == [0, 2], outs
  loser = outs[[p.returncode for p in procs].index(2)]
  assert "is in use by another run (pid " in loser[1]
  assert (workdir / "data" / "COMPLETE").exists()


def test_sigkill_releases_the_lock_and_restart_removes_stale_temps(tmp_path):
  workdir = tmp_path / "w"
  holder = _holder(workdir)
  os.kill(holder.pid, signal.SIGKILL)
  holder.wait()
  workdirs.lock(workdir)  # the OS dropped the dead holder's lock
  try:
    removed = workdirs.remove_stale_temps(workdir)
    assert sorted(p.name for p in removed) == [
        ".food.k3j9.tmp", ".results.json.x1.tmp", "4.orbax-checkpoint-tmp-17"]
    assert not any(p.name.endswith(".tmp") for p in workdir.rglob("*"))
    assert (workdir / "data").is_dir()
    assert (workdir / workdirs.LOCK_FILE).read_text().strip() == str(os.getpid())
  finally:
    workdirs.release(workdir)
