"""Orbax checkpointing for every training loop.

A training loop owns one `Checkpointer` over an absolute directory. It saves a pytree
state (params, optimizer state) plus a JSON `meta` dict (step, data-order position,
anything needed to resume) and restores into an abstract target so optax namedtuples
and shardings come back as they were saved.

Resume order: latest complete step in the directory → restore state + meta → the loop
continues from meta's position. A directory with no checkpoint means a fresh start.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings where the arrays have them) mirroring `tree`."""

  def one(x):
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(one, tree)


class Checkpointer:
  """Keeps the latest `max_to_keep` checkpoints of one training loop."""

  def __init__(self, directory: pathlib.Path | str, *, max_to_keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    self.directory.mkdir(parents=True, exist_ok=True)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
        ),
    )

  def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores (state, meta) at `step` (default latest) into the structure of `target`.

    `target` may be a concrete state (its shapes, dtypes and shardings are used) or an
    abstract one.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(target)), meta=ocp.args.JsonRestore()
        ),
    )
    return restored["state"], dict(restored["meta"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
