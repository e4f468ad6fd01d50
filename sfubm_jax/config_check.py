"""Checks a config before any stage runs or anything is written.

A misspelt choice (`--config.llm.valid_rule=exactly`) or a value a stage rejects
(`server.num_clusters=0`) would otherwise surface only in the stage that reads it,
possibly hours into a run. `check` reads each choice field's allowed values from the
module that implements it, checks the values the stages would reject, and reports every
bad field in one error. `check_against_data` adds the checks that need the data stage's
item counts (K ≤ items).
"""

from __future__ import annotations

import ml_collections

from sfubm_jax.errors import UserError


def choices() -> dict[str, tuple[str, ...]]:
  """Allowed values of each choice field, keyed by its dotted config path."""
  from sfubm_jax.federation.perturb import REPLACE_WITH
  from sfubm_jax.llm.answers import RULES
  from sfubm_jax.llm.context import PROJECTOR_INITS
  from sfubm_jax.llm.prompts import ITEM_SLOTS
  from sfubm_jax.llm.stage2 import RANK_REDUCE
  from sfubm_jax.llm.train_stage import TRAIN_TARGETS
  from sfubm_jax.llm.variants import VARIANTS
  from sfubm_jax.metrics import METRICS
  from sfubm_jax.models import fkd, projector
  from sfubm_jax.models.causal_lm.backbone import FAMILIES

  return {
      "federation.transport": ("file", "flower"),
      "privacy.replace_with": REPLACE_WITH,
      "fkd.activation": tuple(fkd.ACTIVATIONS),
      "fkd.teacher": fkd.TEACHERS,
      "fkd.rec_positions": fkd.REC_POSITIONS,
      "fkd.select_metric": METRICS,
      "sasrec.select_metric": METRICS,
      "gru4rec.select_metric": METRICS,
      "llm.user_activation": tuple(projector.ACTIVATIONS),
      "llm.item_activation": tuple(projector.ACTIVATIONS),
      "llm.train_targets": TRAIN_TARGETS,
      "llm.projector_init": PROJECTOR_INITS,
      "llm.item_slot": ITEM_SLOTS,
      "llm.family": FAMILIES,
      "llm.valid_rule": RULES,
      "llm.rank_reduce": RANK_REDUCE,
      "llm.variants[]": tuple(VARIANTS),
  }


def _get(config: ml_collections.ConfigDict, path: str):
  node = config
  for key in path.split("."):
    if key not in node:
      return None
    node = node[key]
  return node


def value_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Values the stages would reject, each as 'config.<path>: what is wrong'."""
  from sfubm_jax.data.sources import FORMATS

  bad = []
  domains = list(config.domains)
  if not domains:
    bad.append("config.domains is empty; list the target domain first, then the sources")
  if len(set(domains)) != len(domains):
    bad.append(f"config.domains {domains} names a domain twice")
  for section in ("data.sources", "data.max_users", "llm.item_noun"):
    missing = [d for d in domains if d not in _get(config, section)]
    if missing:
      bad.append(f"config.{section} has no entry for {missing}; build the config with "
                 f"configs/pair.py:{','.join(domains)} so every domain gets one")
  for d in domains:
    source = config.data.sources.get(d)
    if source is not None and source.format not in FORMATS:
      bad.append(f"config.data.sources.{d}.format={source.format!r} is not supported; use "
                 f"one of {list(FORMATS)}")
    users = config.data.max_users.get(d)
    if users is not None and users < 0:
      bad.append(f"config.data.max_users.{d}: {users} < 0 (0 keeps every user)")
  if config.server.num_clusters <= 0:
    bad.append(f"config.server.num_clusters: {config.server.num_clusters} must be ≥ 1")
  if config.privacy.noise_scale <= 0:
    bad.append(f"config.privacy.noise_scale: {config.privacy.noise_scale} must be > 0 "
               "(λ ≤ 0 uploads unperturbed vectors)")
  if any(x <= 0 for x in config.privacy.sweep):
    bad.append(f"config.privacy.sweep: {list(config.privacy.sweep)} holds a λ ≤ 0")
  if config.llm.eval_memory_gb <= 0:
    bad.append(f"config.llm.eval_memory_gb: {config.llm.eval_memory_gb} must be > 0 (GB the "
               "likelihood ranking may use)")
  for section in ("sasrec", "gru4rec", "fkd"):
    if config[section].patience < 0:
      bad.append(f"config.{section}.patience: {config[section].patience} < 0 (0 trains "
                 "every epoch)")
  if config.llm.max_buckets < 1:
    bad.append(f"config.llm.max_buckets: {config.llm.max_buckets} < 1 (length buckets, "
               "= compilations of each Stage 2 program, at most)")
  if config.llm.max_new_tokens < 0:
    bad.append(f"config.llm.max_new_tokens: {config.llm.max_new_tokens} < 0 (0 = the "
               "longest shown title)")
  stray = [d for d in config.llm.domains if d and d not in domains]
  if stray:
    bad.append(f"config.llm.domains: {stray} not in config.domains {domains}")
  return bad


def check_num_clusters(config: ml_collections.ConfigDict, items: dict[str, int],
                       where: str = "") -> None:
  """Raises UserError when K exceeds the items of `config.domains` ({domain: count})."""
  total = sum(int(items[d]) for d in config.domains if d in items)
  if total and config.server.num_clusters > total:
    raise UserError(f"config.server.num_clusters: {config.server.num_clusters} is more than "
                    f"the {total} items of {list(config.domains)}{where}; choose K ≤ {total}")


def check_against_data(config: ml_collections.ConfigDict, workdir) -> None:
  """`check_num_clusters` against a finished data stage (DIR/data/stats.json), if any."""
  import pathlib

  from sfubm_jax import io_utils

  path = pathlib.Path(workdir) / "data" / "stats.json"
  if path.exists():
    table = io_utils.read_json(path)
    check_num_clusters(config, {d: row["items"] for d, row in table.items()}, f" ({path})")


LLM_STAGES = ("llm", "eval")


def llm_problems(config: ml_collections.ConfigDict, stages) -> list[str]:
  """Why the Stage 2 LLM of a run that includes the llm or eval stage cannot be used.

  Only the tiny test sizes may run the random small model; every other config names a
  checkpoint, and a shipped name or a path that is not there is reported before any stage.
  """
  if not any(s in LLM_STAGES for s in stages):
    return []
  ckpt = str(config.llm.checkpoint)
  if not ckpt:
    if config.variant == "tiny":
      return []
    cpu = f"configs/{config.pair}.py:cpu" if config.pair in _paper_pairs() else (
        f"configs/pair.py:{','.join(config.domains)},cpu")
    return ["config.llm.checkpoint is empty: Stage 2 needs a pretrained LLM (a random one is "
            "for configs/tiny.py only); pass --config.llm.checkpoint=/path/to/opt-6.7b (a local "
            f"Hugging Face folder, or a Llama-family .gguf), or run {cpu}, which uses the "
            "shipped SmolLM2-135M-Instruct"]
  from sfubm_jax.models.causal_lm import shipped

  if shipped.is_shipped(ckpt):
    try:
      shipped.shipped_gguf(ckpt)
    except UserError as e:
      return [str(e)]
    return []
  import pathlib

  path = pathlib.Path(ckpt).expanduser()
  if not (path.is_dir() or (path.suffix == ".gguf" and path.is_file())):
    return [f"config.llm.checkpoint={ckpt!r} is neither a Hugging Face folder, a .gguf file "
            f"nor a shipped LLM name ({', '.join(sorted(shipped.SHIPPED))})"]
  return []


def _paper_pairs() -> tuple[str, ...]:
  try:
    from configs import common
  except ImportError:  # the configs package is not importable: suggest configs/pair.py
    return ()
  return tuple(common.PAIRS)


def check(config: ml_collections.ConfigDict, stages=()) -> None:
  """Raises UserError naming every bad choice and every value a stage would reject
  (`stages`: those the run will run; the LLM is checked when llm or eval is among them)."""
  bad = value_problems(config) + llm_problems(config, stages)
  for path, allowed in choices().items():
    many = path.endswith("[]")
    value = _get(config, path.removesuffix("[]"))
    if value is None:
      continue
    for v in (value if many else [value]):
      if v not in allowed:
        bad.append(f"config.{path.removesuffix('[]')}: {v!r} is not one of {list(allowed)}")
  if bad:
    raise UserError("; ".join(bad))
