"""The λ privacy sweep (paper Table 5, extended): sim and every attack per domain and λ.

Each client's noise key (its secret) is the same for every λ (only the scale changes),
so the rows differ by λ alone. Outputs a Markdown table (one row per λ and domain), and
a PNG of privacy against utility: kept semantics (sim) and attack success over λ.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from sfubm_jax import io_utils
from sfubm_jax.federation import attacks, client

# (figure key, column label) of the sweep table and the attack panel of the plot.
COLUMNS = (
    ("sim", "sim"), ("reid@1", "reid@1"), ("mech_top1", "mech top-1"),
    ("mech_top10", "mech top-10"), ("mech_mrr", "mech MRR"), ("ridge_top1", "ridge top-1"),
    ("ridge_top10", "ridge top-10"), ("mlp_top1", "MLP top-1"), ("mlp_top10", "MLP top-10"),
    ("bow_f1", "BoW F1"),
)
ATTACK_CURVES = ("reid@1", "mech_top10", "ridge_top10", "mlp_top10", "bow_f1")


def privacy_sweep(
    vectors: Mapping[str, np.ndarray], lambdas: Sequence[float], config: client.PrivacyConfig,
    secrets: Mapping[str, bytes], titles: Mapping[str, Sequence[str]],
    attack: attacks.AttackConfig,
    known: Mapping[float, Mapping[str, Mapping[str, float]]] | None = None,
) -> dict[float, dict[str, dict[str, float]]]:
  """{λ: {domain: {sim, reid@1, attacks...}}} for e [N+1, d_t] and titles [N+1] per domain.

  known: rows already computed for some λ (the round's own upload at the configured λ,
  with the same secret, so the same figures); they are copied, not recomputed, when they
  hold every figure of the table for every domain and say they were made at that λ with
  the configured `replace_with`.
  """
  table: dict[float, dict[str, dict[str, float]]] = {}
  def usable(lam, rows):  # every figure, computed at this λ with this mechanism
    return all(d in rows and all(k in rows[d] for k, _ in COLUMNS)
               and rows[d].get("noise_scale") == lam
               and rows[d].get("replace_with") == config.replace_with for d in vectors)

  known = {float(lam): rows for lam, rows in (known or {}).items() if usable(float(lam), rows)}
  for lam in lambdas:
    if float(lam) in known:
      table[float(lam)] = {d: dict(known[float(lam)][d]) for d in vectors}
      continue
    table[float(lam)] = {
        domain: client.make_upload(domain, e, config, secrets[domain], noise_scale=float(lam),
                                   titles=titles[domain], attack=attack)[1]
        for domain, e in vectors.items()
    }
  return table


def _cell(row: Mapping, key: str) -> str:
  value = row.get(key)
  return "–" if value is None else f"{value:.4f}"


def sweep_markdown(table: Mapping[float, Mapping[str, Mapping[str, float]]]) -> str:
  """One row per (λ descending, domain); columns sim, reid@1 and the attacks."""
  lambdas = sorted(table, reverse=True)
  head = "| λ | domain | " + " | ".join(label for _, label in COLUMNS) + " |"
  rule = "|---|---|" + "---:|" * len(COLUMNS)
  rows = [f"| {lam:g} | {d} | " + " | ".join(_cell(table[lam][d], k) for k, _ in COLUMNS) + " |"
          for lam in lambdas for d in table[lam]]
  return "\n".join([head, rule, *rows]) + "\n"


def sweep_png(table: Mapping[float, Mapping[str, Mapping[str, float]]]) -> bytes:
  """Privacy vs utility over λ (log axis): sim per domain; attack success per domain."""
  import matplotlib

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  lambdas = sorted(table)
  domains = list(table[lambdas[0]])
  styles = ["-", "--", ":", "-."]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for k, d in enumerate(domains):
    axes[0].plot(lambdas, [table[lam][d]["sim"] for lam in lambdas], marker="o", label=d,
                 linestyle=styles[k % len(styles)])
    for c, key in enumerate(ATTACK_CURVES):
      values = [table[lam][d].get(key, np.nan) for lam in lambdas]
      axes[1].plot(lambdas, values, marker="o", color=f"C{c}", linestyle=styles[k % len(styles)],
                   label=f"{key} ({d})")
  for ax, title in zip(axes, ("utility kept: sim = mean cos(e_i, ẽ_i)",
                              "attack success (higher = less private)")):
    ax.set_xscale("log")
    ax.set_xlabel("noise scale λ")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  axes[1].legend(fontsize=6, ncol=2)
  fig.suptitle("Client-side perturbation: privacy vs utility")
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
