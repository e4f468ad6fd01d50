"""The λ privacy sweep (paper Table 5): sim and reid@1 per domain for several λ.

Each client's noise key (its secret) is the same for every λ (only the scale changes),
so the rows differ by λ alone. Outputs a Markdown table in the paper's layout and a PNG plot.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.federation import client


def privacy_sweep(
    vectors: Mapping[str, np.ndarray], lambdas: Sequence[float], config: client.PrivacyConfig,
    secrets: Mapping[str, bytes],
) -> dict[float, dict[str, dict[str, float]]]:
  """{λ: {domain: {sim, reid@1, ...}}} for e [N+1, d_t] per domain."""
  table: dict[float, dict[str, dict[str, float]]] = {}
  for lam in lambdas:
    table[float(lam)] = {
        domain: client.make_upload(domain, e, config, secrets[domain],
                                   noise_scale=float(lam))[1]
        for domain, e in vectors.items()
    }
  return table


def sweep_markdown(table: Mapping[float, Mapping[str, Mapping[str, float]]]) -> str:
  """Rows λ (descending), per domain the columns sim and reid@1."""
  lambdas = sorted(table, reverse=True)
  domains = list(table[lambdas[0]])
  head = "| λ | " + " | ".join(f"{d} sim | {d} reid@1" for d in domains) + " |"
  rule = "|---|" + "---|---|" * len(domains)
  rows = [
      f"| {lam:g} | "
      + " | ".join(f"{table[lam][d]['sim']:.4f} | {table[lam][d]['reid@1']:.4f}" for d in domains)
      + " |"
      for lam in lambdas
  ]
  return "\n".join([head, rule, *rows]) + "\n"


def sweep_png(table: Mapping[float, Mapping[str, Mapping[str, float]]]) -> bytes:
  """Two panels over λ (log axis): sim and reid@1, one line per domain."""
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  lambdas = sorted(table)
  domains = list(table[lambdas[0]])
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  for metric, ax in zip(("sim", "reid@1"), axes):
    for d in domains:
      ax.plot(lambdas, [table[lam][d][metric] for lam in lambdas], marker="o", label=d)
    ax.set_xscale("log")
    ax.set_xlabel("noise scale λ")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  axes[0].legend()
  fig.suptitle("Client-side perturbation: kept semantics (sim) vs re-identification")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=110)
  plt.close(fig)
  return buf.getvalue()


def write_sweep(directory: pathlib.Path, table) -> None:
  io_utils.atomic_write_text(directory / "privacy_sweep.md", sweep_markdown(table))
  io_utils.atomic_write_bytes(directory / "privacy_sweep.png", sweep_png(table))
  io_utils.write_json(
      directory / "privacy_sweep.json", {f"{lam:g}": row for lam, row in table.items()}
  )
