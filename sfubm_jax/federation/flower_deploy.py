"""A local Flower deployment for one federation round: SuperLink + one SuperNode per client.

`run_round` starts `flower-superlink` and one `flower-supernode` per domain on localhost
(each in its own process group, logs under `DIR/federate/flower/`), submits the App in
`flower_app/` with `flwr run`, waits (bounded) for the ServerApp's `DONE` file and stops
every process it started. No Ray: the ServerApp and ClientApps run as Flower's own
subprocesses. Across organisations the same App runs against one SuperLink, each client
starting its own SuperNode (README "Federation over Flower").
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError
from sfubm_jax.federation import server

APP_DIR = pathlib.Path(__file__).with_name("flower_app")
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _tool(name: str) -> str:
  path = pathlib.Path(sys.executable).with_name(name)
  if not path.exists():
    raise UserError(f"{name} not found beside {sys.executable}; install the Flower extra: "
                    "pip install -e \".[flower]\"")
  return str(path)


def _wait_port(port: int, deadline: float, proc: subprocess.Popen, log: pathlib.Path) -> None:
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise UserError(f"flower-superlink exited with {proc.returncode}; see {log}")
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
      return
    time.sleep(0.2)
  raise UserError(f"flower-superlink did not listen on 127.0.0.1:{port} in time; see {log}")


def _stop(procs: list[subprocess.Popen]) -> None:
  for p in procs:
    with contextlib.suppress(ProcessLookupError):
      os.killpg(p.pid, signal.SIGTERM)
  deadline = time.monotonic() + 10
  for p in procs:
    with contextlib.suppress(subprocess.TimeoutExpired):
      p.wait(max(0.1, deadline - time.monotonic()))
    with contextlib.suppress(ProcessLookupError):
      os.killpg(p.pid, signal.SIGKILL)  # the group: SuperExec and app subprocesses too
    p.wait()


def run_round(workdir: pathlib.Path, domains: list[str], config: server.ServerConfig, *,
              outbox: pathlib.Path, timeout_s: float = 600.0) -> dict:
  """Runs upload → k-means++ → reply over a local Flower deployment; returns the report.

  Each client reads `workdir/config.json` and its data stage output, as the file
  transport's client does. The server's received and sent messages land in `outbox`.
  """
  workdir, outbox = pathlib.Path(workdir).absolute(), pathlib.Path(outbox).absolute()
  base = workdir / "federate" / "flower"
  home = base / "home"
  home.mkdir(parents=True, exist_ok=True)
  for name in ("DONE", "FAILED"):
    with contextlib.suppress(FileNotFoundError):
      (outbox / name).unlink()
  port = _free_port()
  io_utils.atomic_write_text(home / "config.toml", (
      '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
      f'address = "127.0.0.1:{port}"\ninsecure = true\n'))
  # Flower starts its helpers (flower-superexec, flwr-serverapp, ...) by name: put this
  # interpreter's scripts first on PATH, and this checkout first on PYTHONPATH.
  env = dict(os.environ, FLWR_HOME=str(home),
             PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent),
                                   os.environ.get("PATH", "")]),
             PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
  procs: list[subprocess.Popen] = []

  def start(cmd: list[str], log_name: str) -> subprocess.Popen:
    log = open(base / log_name, "ab")  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen(cmd, env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    procs.append(proc)
    return proc

  deadline = time.monotonic() + timeout_s
  try:
    link = start([_tool("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port",
                  str(port), "--disable-runtime-dependency-installation"], "superlink.log")
    _wait_port(port, deadline, link, base / "superlink.log")
    for domain in domains:
      node_config = f"workdir={_quote(workdir)} domain={_quote(domain)}"
      start([_tool("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{port}",
             "--port", str(_free_port()), "--node-config", node_config],
            f"supernode_{domain}.log")
    run_config = {"num-clients": len(domains), "outbox": str(outbox), "timeout-s": timeout_s,
                  "num-clusters": config.num_clusters, "tol": config.tol,
                  "max-iter": config.max_iter, "greedy-trials": config.greedy_trials,
                  "seed": config.seed, "chunk": config.chunk}
    cmd = [_tool("flwr"), "run", str(APP_DIR), "local"]
    for k, v in run_config.items():
      cmd += ["--run-config", f"{k}={_quote(v)}"]
    submit = subprocess.run(cmd, env=env, cwd=base, capture_output=True, text=True,
                            timeout=max(1.0, deadline - time.monotonic()))
    if submit.returncode != 0:
      raise UserError(f"flwr run failed ({submit.returncode}): "
                      f"{(submit.stdout + submit.stderr).strip()[-500:]}")
    while time.monotonic() < deadline:
      if (outbox / "DONE").exists():
        return io_utils.read_json(outbox / server.REPORT)
      dead = [p for p in procs if p.poll() is not None]
      if dead:
        raise UserError(f"a Flower process exited early ({' '.join(dead[0].args[:1])}, "
                        f"status {dead[0].returncode}); logs in {base}")
      if (outbox / "FAILED").exists():
        reason = (outbox / "FAILED").read_text().strip().splitlines()[-1]
        raise UserError(f"the Flower round failed: {reason}; logs in {base}")
      time.sleep(0.2)
    raise UserError(f"the Flower round did not finish in {timeout_s:.0f} s "
                    f"(config.federation.timeout_s); logs in {base}")
  except subprocess.TimeoutExpired:
    raise UserError(f"flwr run did not return in time; logs in {base}") from None
  finally:
    _stop(procs)


def _quote(value) -> str:
  """A Flower config value: numbers as they are, strings TOML-quoted."""
  if isinstance(value, bool) or not isinstance(value, int | float):
    text = str(value)
    if '"' in text or "\\" in text:
      raise UserError(f"cannot pass {text!r} to Flower (quote or backslash in it)")
    return f'"{text}"'
  return repr(value)


__all__ = ["APP_DIR", "run_round"]
