"""Dataset statistics in the shape of the paper's Table 1, beside the paper's figures.

`DIR/data/stats.json`: {domain: {users, items, interactions, avg_len, sparsity,
paper: {users, items, avg_len}, preprocessing: {raw, after_rating_filter,
after_min_len, strata}}}; `DIR/data/stats.md`: the same as a Markdown table.
"""

from __future__ import annotations

from collections.abc import Mapping

from sfubm_jax.data.split import DomainSplit

# Paper Table 1 (users, items, average sequence length) per domain.
PAPER_TABLE1 = {
    "health": {"users": 4088, "items": 3593, "avg_len": 3.42},
    "beauty": {"users": 8499, "items": 5828, "avg_len": 6.71},
    "food": {"users": 12689, "items": 32228, "avg_len": 7.48},
    "kitchen": {"users": 8936, "items": 39273, "avg_len": 7.61},
    "books": {"users": 6905, "items": 41598, "avg_len": 8.22},
    "movielens": {"users": 9554, "items": 9102, "avg_len": 9.99},
}


def table_row(split: DomainSplit) -> dict:
  """users, items, interactions, avg_len, sparsity of a preprocessed domain."""
  users, items = split.num_users, split.num_items
  interactions = int(split.lengths.sum())
  return {
      "users": users,
      "items": items,
      "interactions": interactions,
      "avg_len": interactions / users if users else 0.0,
      "sparsity": 1.0 - interactions / (users * items) if users and items else 1.0,
  }


def build_stats(splits: list[DomainSplit], details: Mapping[str, dict]) -> dict:
  """The stats.json object: our Table 1 row, the paper's, and the preprocessing counts."""
  stats = {}
  for split in splits:
    row = table_row(split)
    row["paper"] = PAPER_TABLE1.get(split.name)
    row["preprocessing"] = details[split.name]
    stats[split.name] = row
  return stats


def markdown(stats: Mapping[str, dict], order: list[str]) -> str:
  """Table 1 as Markdown, domains in `order`."""
  lines = [
      "| domain | users | items | interactions | avg len | sparsity "
      "| paper users | paper items | paper avg len |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for name in order:
    s = stats[name]
    p = s["paper"] or {}
    lines.append(
        f"| {name} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | "
        f"{s['avg_len']:.2f} | {100 * s['sparsity']:.2f}% | {_fmt(p.get('users'))} | "
        f"{_fmt(p.get('items'))} | {_fmt(p.get('avg_len'))} |"
    )
  return "\n".join(lines) + "\n"


def _fmt(value) -> str:
  if value is None:
    return "–"
  return f"{value:.2f}" if isinstance(value, float) else f"{value:,}"
