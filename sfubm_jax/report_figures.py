"""The pictures and the CSV that open `DIR/report.md`.

- `hit1_chart`: Hit@1 per method on the target domain (test split), the paper's bar
  beside ours where the pair is the paper's (`report.PAPER_TABLE2`, matched by
  `report.TABLE2_ROWS`);
- `write_results_csv`: `DIR/results.csv`, one row per (method, domain, metric).
"""

from __future__ import annotations

import csv
import io
import pathlib
from collections.abc import Mapping

import numpy as np

from sfubm_jax import io_utils


def chart_rows(res: Mapping, pair: str, target: str) -> list[tuple[str, float, float | None]]:
  """(method, our Hit@1, the paper's Hit@1 or None) for every method run on `target`."""
  from sfubm_jax.report import PAPER_TABLE2, TABLE2_ROWS

  paper = PAPER_TABLE2.get(pair, {})
  column = {ours: col for ours, col, _ in TABLE2_ROWS}
  rows = []
  for method in res:
    r = res[method].get(target, {})
    if "hit@1" in r:
      rows.append((method, float(r["hit@1"]), paper.get(column.get(method, ""))))
  order = [m for m, _, _ in TABLE2_ROWS]
  rows.sort(key=lambda x: (order.index(x[0]) if x[0] in order else len(order), x[0]))
  return rows


def hit1_chart(res: Mapping, pair: str, target: str, path: pathlib.Path) -> bool:
  """Draws the Hit@1 bar chart into `path` (PNG); False if there is nothing to draw."""
  rows = chart_rows(res, pair, target)
  if not rows:
    return False
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  x = np.arange(len(rows))
  with_paper = any(p is not None for _, _, p in rows)
  width = 0.4 if with_paper else 0.7
  fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(rows) + 2), 3.6))
  ours = ax.bar(x - (width / 2 if with_paper else 0), [h for _, h, _ in rows], width,
                label="ours", color="#3b75af")
  ax.bar_label(ours, fmt="%.3f", fontsize=7)
  if with_paper:
    paper_x = [i + width / 2 for i, (_, _, p) in enumerate(rows) if p is not None]
    bars = ax.bar(paper_x, [p for _, _, p in rows if p is not None], width,
                  label="paper (Table 2)", color="#ef8636")
    ax.bar_label(bars, fmt="%.3f", fontsize=7)
  ax.set_xticks(x, [m for m, _, _ in rows], rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("Hit@1 (test)")
  ax.set_title(f"Hit@1 on {target} ({pair})")
  ax.legend(fontsize=8)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100)
  plt.close(fig)
  io_utils.atomic_write_bytes(path, buf.getvalue())
  return True


def write_results_csv(res: Mapping, path: pathlib.Path) -> None:
  """results.json flattened: method,domain,metric,value (sorted, so byte-stable)."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["method", "domain", "metric", "value"])
  for method in sorted(res):
    for domain in sorted(res[method]):
      for metric in sorted(res[method][domain]):
        writer.writerow([method, domain, metric, repr(float(res[method][domain][metric]))])
  io_utils.atomic_write_text(path, buf.getvalue())
