"""The `llm` stage: Stage 2 training of every (domain, variant) (SPEC §7–8).

Per domain in `config.llm.domains` and variant in `config.llm.variants`, trains the
soft-prompt projectors P_u, P_i on the answer tokens of hybrid prompts (Eq. 17); the LLM
is frozen unless it is the random small OPT of the CPU configs (trained from scratch,
"full") or LoRA is on (`config.llm.lora_rank > 0`, "lora").

Training example per user: the train history minus its last item as history, that last
item as target, and 1 + num_negatives candidates (target + never-touched items with
distinct titles, seeded, shuffled). Outputs under `DIR/llm/`:
  tokenizer/                          the trained BPE (no checkpoint) and its fingerprint
  <domain>/<variant>/ckpt/            Orbax checkpoints {"trainable", "opt"} + meta
  <domain>/<variant>/history.json     per-step loss and the train mode
Every `runtime.checkpoint_every` steps and at each epoch end a checkpoint is saved; a
rerun resumes at the latest one and ends with the same parameters.
"""

from __future__ import annotations

import functools
import math
import pathlib

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from sfubm_jax import io_utils
from sfubm_jax.checkpoint import Checkpointer
from sfubm_jax.data.candidates import touched_items
from sfubm_jax.errors import UserError
from sfubm_jax.llm import prompts, stage2
from sfubm_jax.llm.context import DomainContext, VariantParts, build_parts, load_context
from sfubm_jax.progress import progress
from sfubm_jax.sharding import batch_divisor, batch_sharding

DONE = "history.json"


@functools.lru_cache(maxsize=8)
def jitted_train_step(model: stage2.Stage2Model, lr: float, keep: int):
  """One compiled step per model structure: variants with equal shapes share it."""
  return jax.jit(stage2.make_train_step(model, optax.adam(lr), keep), donate_argnums=0)


TRAIN_TARGETS = ("last", "all")


def training_pairs(hist: np.ndarray, targets: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(history [N, L] left-padded, target [N], user [N]) from train histories [U, L].

  "last": one pair per user, the last train item as target (A-LLMRec). "all": every
  position with at least one earlier item is a target (LLaRA-style prefixes), ordered by
  user then position. A user whose train history has a single item gives no pair.
  """
  if targets not in TRAIN_TARGETS:
    raise UserError(f"config.llm.train_targets={targets!r} is not one of {TRAIN_TARGETS}")
  length = hist.shape[1]
  ends = [length - 1] if targets == "last" else range(1, length)
  rows, outs, users = [], [], []
  for u in range(hist.shape[0]):
    for j in ends:
      if hist[u, j] > 0 and hist[u, j - 1] > 0:
        row = np.zeros(length, hist.dtype)
        row[length - j:] = hist[u, :j]
        rows.append(row)
        outs.append(hist[u, j])
        users.append(u)
  return (np.asarray(rows, hist.dtype).reshape(-1, length),
          np.asarray(outs, hist.dtype), np.asarray(users, np.int64))


def training_examples(ctx: DomainContext, num_negatives: int, seed: int,
                      targets: str = "last") -> dict[str, np.ndarray]:
  """history [N, L], target [N], candidates [N, C], target_pos [N] for training prompts.

  Negatives are items the user never touched (in any split), drawn per example.
  """
  hist, _ = ctx.split.history("train")
  history, target, users = training_pairs(hist, targets)
  if not len(target):
    raise UserError(f"domain {ctx.domain!r}: no user has two train items, so Stage 2 has "
                    "no training example")
  rng = np.random.default_rng([seed, 7])
  touched = {}
  cands = np.empty((len(target), num_negatives + 1), np.int32)
  for k, (u, t) in enumerate(zip(users, target)):
    if u not in touched:
      touched[u] = touched_items(ctx.split.seqs[u])
    cands[k] = ctx.sample_candidates(rng, int(t), touched[u], num_negatives)
  return {"history": history, "target": target, "candidates": cands,
          "target_pos": np.argmax(cands == target[:, None], axis=1).astype(np.int32)}


def pack_examples(ctx: DomainContext, builder: prompts.PromptBuilder, ex: dict,
                  max_seq_len: int) -> dict[str, np.ndarray]:
  """Every training prompt + answer, left-padded to one length (one jitted step shape)."""
  ps = [builder.build(h, c) for h, c in zip(ex["history"], ex["candidates"])]
  ans = [builder.answer(t) for t in ex["target"]]
  length = prompts.round_up(max(len(p.ids) + len(a) for p, a in zip(ps, ans)))
  prompts.check_length(length, max_seq_len)
  slots = max(1, max(len(p.item_slots) for p in ps))
  return prompts.pack(ps, ans, length=length, num_slots=slots, pad_id=ctx.pad_id)


def epoch_order(num: int, batch: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
  """Shuffled indices padded to whole batches, and weights (0 for the padding repeats)."""
  perm = np.random.default_rng([seed, 11, epoch]).permutation(num)
  pad = (-num) % batch
  idx = np.concatenate([perm, perm[:pad]])
  weight = np.concatenate([np.ones(num, np.float32), np.zeros(pad, np.float32)])
  return idx, weight


def step_batch(packed: dict, user_vecs: np.ndarray, step: int, *, batch_size: int,
               seed: int) -> dict[str, np.ndarray]:
  """The host batch of global step `step`: its rows of the epoch order, user vectors, and
  the loss mask zeroed on the padding repeats of the epoch's last batch."""
  num = len(packed["input_ids"])
  epoch, k = divmod(step, math.ceil(num / batch_size))
  idx, weight = epoch_order(num, batch_size, seed, epoch)
  rows, w = idx[k * batch_size:(k + 1) * batch_size], weight[k * batch_size:(k + 1) * batch_size]
  batch = {key: v[rows] for key, v in packed.items()}
  batch["loss_mask"] = batch["loss_mask"] * w[:, None]
  batch["user_vecs"] = user_vecs[rows]
  return batch


def train_variant(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                  ctx: DomainContext, parts: VariantParts, packed: dict,
                  user_vecs: np.ndarray) -> None:
  """Trains one variant, resuming from its latest checkpoint; writes history.json."""
  hp = config.llm
  out = parts.directory(workdir)
  if (out / DONE).exists():
    logging.info("llm %s/%s: trained, skipped", ctx.domain, parts.variant.name)
    return
  mesh = ctx.mesh
  b = hp.batch_size
  if b % batch_divisor(mesh):
    raise_batch(b, mesh)
  num = len(packed["input_ids"])
  steps_per_epoch = math.ceil(num / b)
  total = steps_per_epoch * hp.epochs
  history = {"train_mode": parts.train_mode, "variant": parts.variant.name,
             "domain": ctx.domain, "steps_per_epoch": steps_per_epoch, "loss": []}
  n_train = sum(int(x.size) for x in jax.tree.leaves(parts.state["trainable"]))
  if n_train == 0 or total == 0:
    history["note"] = "nothing to train (no soft prompts, frozen LLM, no LoRA)"
    io_utils.write_json(out / DONE, history)
    return
  state = parts.state
  ckpt = Checkpointer(out / "ckpt", max_to_keep=config.runtime.max_to_keep)
  step = 0
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(state)
    step, history["loss"] = int(meta["step"]), list(meta["loss"])
    logging.info("llm %s/%s: resumed at step %d/%d", ctx.domain, parts.variant.name, step,
                 total)
  step_fn = jitted_train_step(parts.model, hp.lr, stage2.answer_span(packed["loss_mask"]))
  shard = lambda x: jax.device_put(x, batch_sharding(mesh, x.ndim))
  pending = []  # device losses not yet fetched (no host sync per step)
  def save(s):
    history["loss"].extend(float(x) for x in jax.device_get(pending))
    pending.clear()
    ckpt.save(s, state, {"step": s, "loss": history["loss"]})

  desc = f"llm {ctx.domain}/{parts.variant.name}"
  shown = {}  # the bar's metrics: the loss as of the last checkpoint
  for s in progress(range(step, total), total=total - step, desc=desc,
                    every_s=config.runtime.log_every_s, metrics=shown):
    batch = step_batch(packed, user_vecs, s, batch_size=b, seed=hp.seed)
    state, metrics = step_fn(state, parts.frozen, jax.tree.map(shard, batch))
    pending.append(metrics["loss"])
    if (s + 1) % config.runtime.checkpoint_every == 0 or (s + 1) % steps_per_epoch == 0:
      save(s + 1)
      shown.update(epoch=f"{s // steps_per_epoch + 1}/{hp.epochs}", loss=history["loss"][-1])
  if pending or ckpt.latest_step() != total:
    save(total)
  ckpt.close()
  io_utils.write_json(out / DONE, history)
  logging.info("llm %s/%s: %d steps, last loss %.4f", ctx.domain, parts.variant.name, total,
               history["loss"][-1])


def raise_batch(b: int, mesh) -> None:
  raise UserError(f"config.llm.batch_size={b} is not a multiple of the {batch_divisor(mesh)} "
                  "batch-parallel devices (config.mesh.shape); change one of them")


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  hp = config.llm
  for domain in [d for d in hp.domains if d]:
    ctx = load_context(config, workdir, domain)
    ex = training_examples(ctx, config.data.num_negatives, hp.seed, hp.train_targets)
    cache = {}
    for name in hp.variants:
      parts = build_parts(config, workdir, ctx, name)
      soft = parts.variant.soft_prompts
      if soft not in cache:
        packed = pack_examples(ctx, ctx.builder(soft), ex, hp.max_seq_len)
        vecs = (ctx.user_vectors(ex["history"]) if soft
                else np.zeros((len(ex["target"]), 1), np.float32))
        cache[soft] = (packed, vecs)
      train_variant(config, workdir, ctx, parts, *cache[soft])
      del parts
