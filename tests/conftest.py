"""Test setup: 8 forced CPU devices before jax is imported, so sharding is exercised."""

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


def load_config(name: str, arg: str | None = None):
  """configs/<name>.py:get_config(arg), imported as the package module `configs.<name>`."""
  import importlib

  return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.fixture
def repo_root() -> pathlib.Path:
  return REPO
