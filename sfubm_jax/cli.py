"""Command-line checks that turn every bad invocation into one `error:` line.

absl and ml_collections report a missing config file, a failing `get_config(arg)` or a
mistyped override as tracebacks (some only when the config is first read). `check_argv`
finds those cases before the flags are parsed; `explain_flag_error` turns the errors that
flag parsing still raises into one line (with ml_collections' "did you mean" suggestion).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import sys
import traceback

from sfubm_jax.errors import UserError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def add_repo_to_path() -> None:
  """Makes the `configs` package importable from any working directory."""
  if (REPO_ROOT / "configs" / "__init__.py").exists() and str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def config_flag_value(argv: list[str]) -> str | None:
  """The value of `--config=...` (or `--config ...`) in argv, the last one winning."""
  value = None
  for i, a in enumerate(argv[1:], 1):
    if a.startswith("--config="):
      value = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _frame_in(tb, path: pathlib.Path) -> str:
  frames = [f for f in traceback.extract_tb(tb) if pathlib.Path(f.filename).resolve() == path]
  return f"{path}:{frames[-1].lineno}: " if frames else ""


def load_config_file(value: str):
  """Loads `path[:arg]` as ml_collections would, raising UserError for any failure."""
  path_text, _, arg = value.partition(":")
  path = pathlib.Path(path_text)
  if not path.is_file():
    where = "is a directory" if path.is_dir() else "does not exist"
    raise UserError(f"--config: config file {path_text!r} {where} (cwd {pathlib.Path.cwd()}); "
                    "the shipped configs are in configs/, e.g. configs/books_movielens.py:cpu")
  resolved = path.resolve()
  try:
    spec = importlib.util.spec_from_file_location("sfubm_precheck_config", resolved)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - a user's config file may raise anything
    raise UserError(f"--config: {_frame_in(e.__traceback__, resolved) or f'{path}: '}"
                    f"cannot load: {type(e).__name__}: {e}") from None
  if not hasattr(module, "get_config"):
    raise UserError(f"--config: {path} has no get_config(arg) function")
  try:
    return module.get_config(*([arg] if arg else []))
  except (ValueError, TypeError, KeyError, UserError) as e:
    raise UserError(f"--config={value}: {e}") from None
  except Exception as e:  # noqa: BLE001
    raise UserError(f"--config={value}: {_frame_in(e.__traceback__, resolved)}"
                    f"{type(e).__name__}: {e}") from None


def check_argv(argv: list[str]) -> None:
  """Raises UserError for a config file that cannot give a config (before absl sees it)."""
  value = config_flag_value(argv)
  if value is not None:
    load_config_file(value)


_FIELD = re.compile(r"""['"]\\?'?([A-Za-z_][\w]*)\\?'?['"]""")
_SUGGEST = re.compile(r'Did you mean "([^"]+)"')


def explain_flag_error(error: BaseException, argv: list[str]) -> str | None:
  """One line for an override naming a missing config field, or None if it is not one."""
  text = str(error)
  match = _FIELD.search(text) or re.search(r"([A-Za-z_]\w*)", text)
  if match is None:
    return None
  field = match.group(1)
  given = [a for a in argv[1:] if a.startswith("--config.")
           and re.search(rf"[.]{re.escape(field)}(?:[.=]|$)", a.split("=", 1)[0])]
  if not given:
    return None
  suggestion = _SUGGEST.search(text)
  hint = (f"; did you mean {suggestion.group(1)!r}?" if suggestion
          else "; the fields are in configs/common.py")
  return f"unknown config field {field!r} in {given[0]}{hint}"
