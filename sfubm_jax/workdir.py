"""A run's hold on its workdir: checked before use, locked for the run, tidied under lock.

`check_usable` refuses a workdir that is a file or cannot be created or written, before
anything is written. `lock` takes an exclusive `flock` on `DIR/.lock` for the life of
the process (the OS releases it on any exit, SIGKILL included), so a second run on the
same workdir fails at once, naming the holder's pid. Under the lock no other run writes
here, so every temp file or folder left by a killed run (`.<name>.<random>.tmp` from
`io_utils`, Orbax's `*.orbax-checkpoint-tmp*`) is stale: `remove_stale_temps` deletes them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import re
import shutil

from sfubm_jax.errors import UserError

LOCK_FILE = ".lock"
_STALE = re.compile(r"^\..+\.tmp$|\.orbax-checkpoint-tmp")

_held: dict[str, int] = {}  # workdir -> fd of its lock, kept open for the process's life


def check_usable(workdir: pathlib.Path) -> None:
  """Raises UserError if `workdir` is not a directory this process can create and write."""
  if workdir.exists() and not workdir.is_dir():
    raise UserError(f"--workdir {workdir} exists and is not a directory; give a directory")
  existing = workdir
  while not existing.exists():
    existing = existing.parent
  if not existing.is_dir():
    raise UserError(f"--workdir {workdir}: {existing} is not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    what = "is not writable" if existing == workdir else f"cannot be created in {existing}"
    raise UserError(f"--workdir {workdir} {what} (permission denied); choose a writable place")


def lock(workdir: pathlib.Path) -> None:
  """Creates `workdir` and holds an exclusive lock on it until the process exits."""
  key = str(workdir)
  if key in _held:
    return
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f"--workdir {workdir}: cannot create the run's lock file: "
                    f"{e.strerror or e}") from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise UserError(f"--workdir {workdir} is in use by another run (pid {holder}); wait "
                      "for it to finish or use another --workdir") from None
    raise
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
  _held[key] = fd


def release(workdir: pathlib.Path) -> None:
  """Drops the lock (tests; a run keeps it until it exits)."""
  fd = _held.pop(str(workdir), None)
  if fd is not None:
    os.close(fd)


def remove_stale_temps(workdir: pathlib.Path) -> list[pathlib.Path]:
  """Deletes temp files/folders a killed run left under `workdir` (call under the lock)."""
  if str(workdir) not in _held:
    raise RuntimeError(f"remove_stale_temps({workdir}) without holding its lock")
  removed = []
  for root, dirs, files in os.walk(workdir):
    for name in [d for d in dirs if _STALE.search(d)]:
      shutil.rmtree(pathlib.Path(root) / name, ignore_errors=True)
      removed.append(pathlib.Path(root) / name)
      dirs.remove(name)
    for name in [f for f in files if _STALE.search(f)]:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(pathlib.Path(root) / name)
      removed.append(pathlib.Path(root) / name)
  return removed
