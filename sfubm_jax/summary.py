"""The few lines a run shows on the terminal after a stage and at the end.

Read from what the stages wrote (`data/stats.md`, `federate/privacy.json`,
`federate/cluster_report.json`, `results.json`), so a skipped stage costs nothing and the
terminal says only what the files say.
"""

from __future__ import annotations

import pathlib

import ml_collections

from sfubm_jax import io_utils, results

STAGE1 = ("sasrec", "gru4rec", "fkd", "kd_local", "id_only", "text_only")


def _f(x) -> str:
  return "     –" if x is None else f"{x:.4f}"


def after_stage(name: str, config: ml_collections.ConfigDict,
                workdir: pathlib.Path) -> list[str]:
  if name == "data" and (workdir / "data" / "stats.md").exists():
    return ["   " + line for line in
            (workdir / "data" / "stats.md").read_text(encoding="utf-8").strip().splitlines()]
  if name == "federate":
    return federate_lines(config, workdir)
  return []


def federate_lines(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[str]:
  out = []
  path = workdir / "federate" / "privacy.json"
  if path.exists():
    figures = io_utils.read_json(path)
    parts = [f"{d} sim {f['sim']:.4f} reid@1 {f['reid@1']:.4f}" for d, f in figures.items()]
    out.append(f"   privacy (λ = {config.privacy.noise_scale}, only perturbed vectors "
               f"uploaded): " + "; ".join(parts))
  path = workdir / "federate" / "cluster_report.json"
  if path.exists():
    r = io_utils.read_json(path)
    out.append(f"   server: K = {r['num_clusters']}, inertia {r['inertia']:.4f}, "
               f"{r['iterations']} iterations, {100 * r['bridge_share']:.1f}% of clusters "
               "span domains")
  return out


def final(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[str]:
  """Test results on the target domain, one line per method."""
  res = results.read_results(workdir)
  target = config.domains[0]
  rows = [(m, res[m][target]) for m in sorted(res, key=_order) if target in res.get(m, {})
          and m not in ("federate", "stage2_sample")]
  sample = res.get("stage2_sample", {}).get(target, {})
  for m in ("pop", "sasrec"):  # the ID baselines on exactly the users Stage 2 evaluated
    if f"{m}_hit@1" in sample:
      rows.append((f"{m} ({int(sample['users'])} u.)",
                   {k: sample[f"{m}_{k}"] for k in ("hit@1", "ndcg@10")}))
  if not rows:
    return []
  out = [f"results on {target} (test, {len(rows)} methods):",
         "   method               Hit@1  NDCG@10   Valid"]
  for method, r in rows:
    ndcg = r.get("ndcg@10", r.get("rank_ndcg@10"))
    valid = r.get("valid_ratio")
    out.append(f"   {method:<18} {_f(r.get('hit@1'))}   {_f(ndcg)}  "
               f"{'     –' if valid is None else f'{100 * valid:5.1f}%'}")
  return out


def _order(method: str) -> tuple[int, str]:
  return (STAGE1.index(method) if method in STAGE1 else len(STAGE1), method)
