"""`DIR/report.md`: the run's tables and plots beside the paper's figures (SPEC §9).

Reads whatever the stages left (a missing part is named as missing, not invented):
`data/stats.md` (Table 1), `results.json` (Table 2 and Table 4 rows), the federation
privacy figures (`federate/*/privacy.json`, `federate/privacy_sweep.md`: Table 5), and the
training curves (`llm/<domain>/<variant>/history.json`, `pretrain/**/history.json`,
`fkd/**/metrics.json`), which are drawn into `DIR/report_plots/*.png` (matplotlib, Agg).
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Mapping

import ml_collections
import numpy as np

from sfubm_jax import io_utils, results

# SPEC §9: the paper's Hit@1 on the target domain (Table 2) and SF-UBM's Valid ratio.
PAPER_TABLE2 = {
    "health_beauty": dict(sasrec=0.3889, gru4rec=0.4072, a_llmrec=0.3735, tallrec=0.3350,
                          sfubm=0.4144, sfubm_valid=0.9819),
    "food_kitchen": dict(sasrec=0.2685, gru4rec=0.0518, a_llmrec=0.2920, tallrec=0.3660,
                         sfubm=0.3662, sfubm_valid=0.9949),
    "books_movielens": dict(sasrec=0.0617, gru4rec=0.0676, a_llmrec=0.1757, tallrec=0.1922,
                            sfubm=0.2900, sfubm_valid=0.9915),
}
# Our method -> (the paper's column it is compared with, why it is the closest analogue).
TABLE2_ROWS = (
    ("pop", "pop", "popularity (training-set frequency; the floor, beyond paper)"),
    ("sasrec", "sasrec", "SASRec"),
    ("gru4rec", "gru4rec", "GRU4Rec"),
    ("mlp_llm", "a_llmrec", "A-LLMRec (ours: SASRec embeddings + MLP projectors)"),
    ("llm_only", "tallrec", "TALLRec (ours: the LLM on text only)"),
    ("sfubm", "sfubm", "SF-UBM"),
)
TABLE4_ROWS = ("sfubm", "fkd_no_projector", "llm_kd_local", "llm_id_only", "llm_text_only",
               "llm_only")
# SPEC §3: the paper's Table 5 sim ranges per λ.
PAPER_TABLE5 = {"0.5": "0.33–0.41", "0.1": "0.54–0.64", "0.005": "0.82–0.91"}
GEN_METRICS = ("valid_ratio", "hit@1", "hit@1_valid")
RANK_METRICS = ("rank_hit@1", "rank_hr@5", "rank_ndcg@5", "rank_ndcg@10")


def _f(x) -> str:
  return "–" if x is None else f"{x:.4f}"


def _pct(x) -> str:
  return "–" if x is None else f"{100 * x:.2f}%"


def table2(res: Mapping, pair: str, target: str) -> str:
  paper = PAPER_TABLE2.get(pair, {})
  lines = ["| method | Hit@1 (ours) | Valid (ours) | Hit@1 valid-only | rank HR@1 | "
           "rank NDCG@10 | paper column | Hit@1 (paper) |",
           "|---|---:|---:|---:|---:|---:|---|---:|"]
  for ours, col, label in TABLE2_ROWS:
    r = res.get(ours, {}).get(target)
    if r is None:
      lines.append(f"| {ours} | not run | | | | | {label} | {_f(paper.get(col))} |")
      continue
    valid = r.get("valid_ratio")
    lines.append(
        f"| {ours} | {_f(r.get('hit@1'))} | {_pct(valid)} | {_f(r.get('hit@1_valid'))} | "
        f"{_f(r.get('rank_hit@1'))} | {_f(r.get('rank_ndcg@10'))} | {label} | "
        f"{_f(paper.get(col))} |")
  sample = res.get("stage2_sample", {}).get(target)
  if sample:
    parts = [f"{m} Hit@1 {_f(sample.get(f'{m}_hit@1'))}, NDCG@10 {_f(sample.get(f'{m}_ndcg@10'))}"
             for m in ("pop", "sasrec") if f"{m}_hit@1" in sample]
    lines.append(f"\nOn the {int(sample['users'])} test users that Stage 2 evaluated (same "
                 f"candidates): {'; '.join(parts)}. The LLM rows are over those users only.")
  if paper:
    lines.append(f"\nPaper SF-UBM Valid ratio: {_pct(paper['sfubm_valid'])}. ID-only "
                 "baselines (pop, sasrec, gru4rec) score the same 20 candidates by dot product; "
                 "their Hit@1 is the ranking HR@1 (Valid = 100% by construction).")
  return "\n".join(lines)


def table4(res: Mapping, target: str) -> str:
  lines = ["| variant | Hit@1 | Valid | rank HR@1 | rank NDCG@10 | Stage 1 FKD Hit@1 |",
           "|---|---:|---:|---:|---:|---:|"]
  stage1 = {"sfubm": "fkd", "fkd_no_projector": "fkd", "llm_kd_local": "kd_local",
            "llm_id_only": "id_only", "llm_text_only": "text_only"}
  for name in TABLE4_ROWS:
    r = res.get(name, {}).get(target)
    s1 = res.get(stage1.get(name, ""), {}).get(target, {}).get("hit@1")
    if r is None:
      lines.append(f"| {name} | not run | | | | {_f(s1)} |")
    else:
      lines.append(f"| {name} | {_f(r.get('hit@1'))} | {_pct(r.get('valid_ratio'))} | "
                   f"{_f(r.get('rank_hit@1'))} | {_f(r.get('rank_ndcg@10'))} | {_f(s1)} |")
  return "\n".join(lines)


def all_results(res: Mapping) -> str:
  keys = sorted({k for m in res.values() for d in m.values() for k in d})
  lines = ["| method | domain | " + " | ".join(keys) + " |",
           "|---|---|" + "---:|" * len(keys)]
  for method in sorted(res):
    for domain in sorted(res[method]):
      row = res[method][domain]
      lines.append(f"| {method} | {domain} | " + " | ".join(_f(row.get(k)) for k in keys) + " |")
  return "\n".join(lines)


ATTACK_MEANING = (
    "What these numbers mean for the paper's claim. `sim` is how much of an item's own "
    "text vector its upload keeps (the paper's Table 5). The attacks are what an "
    "honest-but-curious server that knows the config, the mechanism and the public item "
    "texts can do with the uploads: `reid@1` matches an upload to its nearest raw text "
    "vector; the mechanism-aware attack knows that the upload of item i is its nearest "
    "neighbour's vector and ranks that neighbour's neighbours (top-1/top-10/MRR over the "
    "whole catalogue, chance = 1/N and 10/N); the learned denoisers (ridge, MLP) are "
    "fitted on the attacker's own simulation of the mechanism and scored on held-out "
    "items; the bag-of-words inversion predicts title words from an upload. Low figures "
    "at the configured λ support the claim that an upload does not reveal which item it "
    "stands for; a mechanism-aware top-10 far above 10/N means the server can narrow an "
    "upload down to a handful of items, i.e. the protection is weaker than `reid@1` "
    "alone suggests. The noise key and the row order are client secrets, so no attack "
    "can regenerate the noise."
)


def privacy_section(workdir: pathlib.Path) -> str:
  from sfubm_jax.federation.sweep import COLUMNS

  fed = workdir / "federate"
  rows, unprotected = [], []
  for path in sorted(fed.glob("*/privacy.json")):
    p = io_utils.read_json(path)
    if p.get("unprotected"):
      unprotected.append(path.parent.name)
    rows.append(f"| {path.parent.name} | {p.get('noise_scale', '–')} | "
                + " | ".join(_f(p.get(k)) for k, _ in COLUMNS) + " |")
  out = []
  if unprotected:
    out += [f"**UNPROTECTED RUN: `privacy.replace_with=original` put raw text vectors on the "
            f"wire for {', '.join(unprotected)} (`privacy.allow_raw_upload=True`).**", ""]
  if rows:
    out += ["| domain | λ | " + " | ".join(label for _, label in COLUMNS) + " |",
            "|---|---:|" + "---:|" * len(COLUMNS), *rows]
  else:
    out.append(f"(no privacy figures: {fed}/<domain>/privacy.json missing)")
  if (fed / "privacy_sweep.md").exists():
    out += ["", "Sweep over λ (paper Table 5 sim: " +
            ", ".join(f"λ={k}: {v}" for k, v in PAPER_TABLE5.items()) + "):", "",
            (fed / "privacy_sweep.md").read_text(encoding="utf-8").strip()]
    if (fed / "privacy_sweep.png").exists():
      out += ["", f"![privacy vs utility]({fed / 'privacy_sweep.png'})"]
  out += ["", ATTACK_MEANING]
  return "\n".join(out)


def numeric_series(obj) -> dict[str, list[float]]:
  """Named numeric curves in a history object (dict of lists or list of dicts)."""
  out: dict[str, list[float]] = {}
  if isinstance(obj, Mapping):
    for k, v in obj.items():
      if isinstance(v, list) and v and all(isinstance(x, int | float) for x in v):
        out[k] = [float(x) for x in v]
      elif isinstance(v, list | Mapping) and k in ("history", "curves", "train", "valid"):
        out.update({f"{k}/{n}": s for n, s in numeric_series(v).items()})
  elif isinstance(obj, list) and obj and all(isinstance(x, Mapping) for x in obj):
    for key in sorted({k for x in obj for k in x}):
      vals = [x.get(key) for x in obj]
      if all(isinstance(v, int | float) for v in vals) and key not in ("epoch", "step"):
        out[key] = [float(v) for v in vals]
  return out


def _plot(path: pathlib.Path, title: str, series: Mapping[str, list[float]]) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  # Losses and validation metrics live on different scales: one panel each.
  metrics = {k: v for k, v in series.items() if "valid" in k}
  losses = {k: v for k, v in series.items() if "valid" not in k}
  panels = [(name, group) for name, group in (("loss", losses), ("validation", metrics)) if group]
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
  for ax, (label, group) in zip(axes[0], panels):
    for name, ys in group.items():
      ax.plot(np.arange(1, len(ys) + 1), ys, label=name.split("/")[-1])
    ax.set_title(f"{title}: {label}")
    ax.set_xlabel("step / epoch")
    ax.legend(fontsize=7)
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=90)
  plt.close(fig)
  io_utils.atomic_write_bytes(path, buf.getvalue())


def plots(workdir: pathlib.Path) -> list[tuple[str, str]]:
  """Draws every training curve found; returns (caption, relative png path)."""
  plot_dir = workdir / "report_plots"
  made = []
  llm = {}
  for path in sorted((workdir / "llm").glob("*/*/history.json")):
    h = io_utils.read_json(path)
    if h.get("loss"):
      llm.setdefault(path.parent.parent.name, {})[path.parent.name] = h["loss"]
  for domain, series in llm.items():
    name = f"llm_{domain}.png"
    _plot(plot_dir / name, f"Stage 2 training loss ({domain}, per step)", series)
    made.append((f"Stage 2 loss, {domain}", f"report_plots/{name}"))
  stage1 = sorted((workdir / "pretrain").glob("*/*/history.json")) + sorted(
      (workdir / "fkd").glob("*/*/metrics.json"))
  for path in stage1:
    series = numeric_series(io_utils.read_json(path))
    if not series:
      continue
    stage = path.relative_to(workdir).parts[0]
    name = f"{stage}_{path.parent.parent.name}_{path.parent.name}.png"
    _plot(plot_dir / name, f"{stage}: {path.parent.parent.name}/{path.parent.name}", series)
    made.append((f"{stage} {path.parent.parent.name}/{path.parent.name}", f"report_plots/{name}"))
  return made


def llm_notes(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> str:
  hp = config.llm
  modes = {}
  ran = {}  # the LLM as the llm stage described it (history.json)
  prompts_used = {}
  for path in sorted((workdir / "llm").glob("*/*/history.json")):
    h = io_utils.read_json(path)
    modes[f"{path.parent.parent.name}/{path.parent.name}"] = (h.get("train_mode"), h.get("note"))
    ran = h.get("llm", ran)
    if "prompts" in h:
      prompts_used[path.parent.parent.name] = h["prompts"]
  lines = []
  if ran:
    size = f"{ran['params'] / 1e6:,.1f}M parameters, {ran['layers']} layers, hidden {ran['hidden']}"
    mode = {"frozen": "frozen (only the projectors train)", "lora": "frozen + LoRA adapters",
            "full": "trained from scratch with the projectors"}.get(ran["train_mode"],
                                                                    ran["train_mode"])
    lines.append(f"- LLM that ran: {ran['family']} family, {size}, from `{ran['source']}`; "
                 f"{mode}.")
    if ran["train_mode"] == "full" and not hp.checkpoint:
      lines.append("- **A random tiny LLM (test sizes)**: numbers say nothing about the method.")
  elif hp.checkpoint:
    lines.append(f"- LLM: pretrained `{hp.checkpoint}` (the llm stage has not run).")
  for k, (mode, note) in modes.items():
    lines.append(f"- `{k}`: train mode `{mode}`" + (f" ({note})" if note else ""))
  samples = results.read_results(workdir).get("stage2_sample", {})
  for domain, n in prompts_used.items():
    sample = samples.get(domain, {})
    users = int(sample["users"]) if "users" in sample else "–"
    lines.append(f"- Stage 2 sample sizes ({domain}): {n} training prompts "
                 f"(`llm.train_prompts={hp.train_prompts}`, 0 = all), {users} evaluated test "
                 f"users (`llm.eval_users={hp.eval_users}`, 0 = all).")
  targets = {"last": "one per user, the last train item", "all": "every train item after "
             "the first, with its prefix as history"}.get(hp.train_targets, hp.train_targets)
  epochs = f"{hp.epochs} epoch" + ("s" if hp.epochs != 1 else "")
  lines.append(f"- Training prompts (`llm.train_targets={hp.train_targets}`): {targets}; "
               f"{epochs}, batch {hp.batch_size}, Adam lr {hp.lr:g}.")
  lines.append(f"- Valid-answer rule: `{hp.valid_rule}`; likelihood ranking score: "
               f"`{hp.rank_reduce}` of answer-token log-probs.")
  return "\n".join(lines)


def stage1_epochs(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> str:
  """Epochs each Stage 1 model trained, its best validation epoch, and early stops."""
  rows = []
  for stage in ("pretrain", "fkd"):
    for path in sorted((workdir / stage).glob("*/*/metrics.json")):
      m = io_utils.read_json(path)  # fkd keeps its history here, pretrain beside it
      h = m.get("history") or io_utils.read_json(path.parent / "history.json")
      best = m.get("best_epoch")
      name = "fkd" if stage == "fkd" else path.parent.name  # config section: sasrec, gru4rec
      stop = (f"early stop after epoch {h['stopped_at']} (`{name}.patience="
              f"{config[name].patience}`)" if h.get("stopped_at") else "all")
      rows.append(f"| {path.parent.parent.name}/{path.parent.name} | "
                  f"{len(h.get('epoch_loss', []))} of {config[name].epochs} | "
                  f"{best or '–'} | {stop} |")
  if not rows:
    return "(no Stage 1 training histories yet)"
  return "\n".join(["| model | epochs trained | best validation epoch | stopped |",
                    "|---|---:|---:|---|", *rows])


def stage_times(workdir: pathlib.Path) -> str:
  """Wall seconds of every finished stage (from the pipeline's COMPLETE markers)."""
  from sfubm_jax.pipeline import COMPLETE, STAGES

  rows = []
  for name in STAGES:
    marker = workdir / name / COMPLETE
    if marker.exists():
      rows.append(f"| {name} | {io_utils.read_json(marker).get('seconds', '–')} |")
    else:
      rows.append(f"| {name} | running or not run |")
  return "\n".join(["| stage | wall seconds |", "|---|---:|", *rows])


def opening_figures(res: Mapping, pair: str, target: str, workdir: pathlib.Path) -> list[str]:
  """The Hit@1 chart and the privacy sweep plot that open the report; writes results.csv."""
  from sfubm_jax import report_figures

  report_figures.write_results_csv(res, workdir / "results.csv")
  out = []
  if report_figures.hit1_chart(res, pair, target, workdir / "report_plots" / "hit1.png"):
    paper = " beside the paper's Table 2" if pair in PAPER_TABLE2 else ""
    out.append(f"![Hit@1 per method on {target}{paper}](report_plots/hit1.png)")
  if (workdir / "federate" / "privacy_sweep.png").exists():
    out.append("![Privacy–utility over λ: sim (semantics an upload keeps) and the attacks' "
               "success (items a server re-identifies)](federate/privacy_sweep.png)")
  out.append("Results as CSV: `results.csv` (method, domain, metric, value).")
  return out


def write_report(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> pathlib.Path:
  """Writes DIR/report.md (and its plots) from what exists in `workdir`."""
  workdir = pathlib.Path(workdir)
  res = results.read_results(workdir)
  target = config.domains[0]
  stats = workdir / "data" / "stats.md"
  parts = [
      f"# SF-UBM run report: {config.pair}" + (f" (`:{config.variant}`)" if config.variant else ""),
      *opening_figures(res, config.pair, target, workdir),
      f"Domains (target first): {', '.join(config.domains)}. Workdir: `{workdir}`.",
      "## Stage 2 setup", llm_notes(config, workdir),
      "## Table 1: dataset statistics",
      stats.read_text(encoding="utf-8").strip() if stats.exists() else f"(missing: {stats})",
      f"## Table 2: Hit@1 on the target domain ({target})", table2(res, config.pair, target),
      f"## Table 4: ablations ({target})", table4(res, target),
      "## Table 5: privacy of the uploads", privacy_section(workdir),
      "## All results (results.json)", all_results(res) if res else "(no results yet)",
      "## Stage 1 training length", stage1_epochs(config, workdir),
      "## Stage wall times", stage_times(workdir),
      "## Training curves",
  ]
  figs = plots(workdir)
  parts += [f"![{cap}]({png})" for cap, png in figs] or ["(no training histories found)"]
  text = "\n\n".join(parts) + "\n"
  io_utils.atomic_write_text(workdir / "report.md", text)
  return workdir / "report.md"
