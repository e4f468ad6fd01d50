"""`DIR/results.json`: metrics per method and domain, merged in by each stage.

Layout: {method: {domain: {metric: value}}}. Methods: the Stage 1 models (`sasrec`,
`gru4rec`, `fkd`, `kd_local`, `id_only`, `text_only`), the `pop` floor and the LLM variants
(`sfubm`, `llm_only`, `mlp_llm`, ...). Writes are atomic read-merge-write.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping

from sfubm_jax import io_utils


def results_path(workdir: pathlib.Path | str) -> pathlib.Path:
  return pathlib.Path(workdir) / "results.json"


def read_results(workdir: pathlib.Path | str) -> dict:
  path = results_path(workdir)
  return io_utils.read_json(path) if path.exists() else {}


def update_results(
    workdir: pathlib.Path | str, method: str, domain: str, metrics: Mapping[str, float]
) -> None:
  """Merges `metrics` into results[method][domain] (other entries are kept)."""
  results = read_results(workdir)
  entry = results.setdefault(method, {}).setdefault(domain, {})
  entry.update({k: float(v) for k, v in metrics.items()})
  io_utils.write_json(results_path(workdir), results)
