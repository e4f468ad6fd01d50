"""The `llm` stage: Stage 2 training of every (domain, variant) (SPEC §7–8).

Per domain in `config.llm.domains` and variant in `config.llm.variants`, trains the
soft-prompt projectors P_u, P_i on the answer tokens of hybrid prompts (Eq. 17); the LLM
is frozen unless it is the random small OPT of the CPU configs (trained from scratch,
"full") or LoRA is on (`config.llm.lora_rank > 0`, "lora").

Training example per user: the train history minus its last item as history, that last
item as target, and 1 + num_negatives candidates (target + never-touched items with
distinct titles, seeded, shuffled); at most `llm.train_prompts` of them (a seeded draw).
Batches are bucketed by length (`llm.batches`): one compiled step per bucket length.
Training runs through the shared loop (`training.trainer.train_loop`). Outputs under
`DIR/llm/`:
  tokenizer/                          the trained BPE (no checkpoint) and its fingerprint
  <domain>/<variant>/ckpt/            Orbax checkpoints {"state": {"trainable", "opt"}} + meta
  <domain>/<variant>/history.json     per-step loss, train mode, prompts, padding share
Every `runtime.checkpoint_every` steps and at each epoch end a checkpoint is saved; a
rerun resumes at the latest one and ends with the same parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from sfubm_jax import io_utils
from sfubm_jax.checkpoint import Checkpointer
from sfubm_jax.data.candidates import touched_items
from sfubm_jax.errors import UserError
from sfubm_jax.llm import batches, prompts, stage2
from sfubm_jax.llm.context import (
  DomainContext,
  VariantParts,
  build_parts,
  describe_llm,
  load_context,
)
from sfubm_jax.sharding import batch_divisor, batch_sharding
from sfubm_jax.training.trainer import LoopConfig, train_loop

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
                      targets: str = "last", limit: int = 0) -> dict[str, np.ndarray]:
  """history [N, L], target [N], user [N], candidates [N, C], target_pos [N].

  At most `limit` examples (a seeded draw, `batches.sample`; 0 = all). Negatives are
  items the user never touched (in any split), drawn per example.
  """
  hist, _ = ctx.split.history("train")
  history, target, users = training_pairs(hist, targets)
  if not len(target):
    raise UserError(f"domain {ctx.domain!r}: no user has two train items, so Stage 2 has "
                    "no training example")
  keep = batches.sample(len(target), limit, seed, salt=13)
  history, target, users = history[keep], target[keep], users[keep]
  rng = np.random.default_rng([seed, 7])
  touched = {}
  cands = np.empty((len(target), num_negatives + 1), np.int32)
  for k, (u, t) in enumerate(zip(users, target)):
    if u not in touched:
      touched[u] = touched_items(ctx.split.seqs[u])
    cands[k] = ctx.sample_candidates(rng, int(t), touched[u], num_negatives)
  return {"history": history, "target": target, "user": users, "candidates": cands,
          "target_pos": np.argmax(cands == target[:, None], axis=1).astype(np.int32)}


@dataclasses.dataclass(frozen=True)
class Encoded:
  """Every training prompt of one prompt kind (with or without soft prompts), unpadded."""

  prompts: list[prompts.Prompt]
  answers: list[list[int]]
  lengths: np.ndarray  # [N] prompt + answer tokens
  num_slots: int
  user_vecs: np.ndarray  # [N, d] r_u ([N, 1] zeros without soft prompts)
  keep: int  # trailing positions that hold every answer-token prediction


def encode_examples(builder: prompts.PromptBuilder, ex: dict, max_seq_len: int,
                    user_vecs: np.ndarray) -> Encoded:
  ps = [builder.build(h, c) for h, c in zip(ex["history"], ex["candidates"])]
  ans = [builder.answer(t) for t in ex["target"]]
  lengths = np.asarray([len(p.ids) + len(a) for p, a in zip(ps, ans)], np.int64)
  prompts.check_length(prompts.round_up(int(lengths.max())), max_seq_len)
  return Encoded(ps, ans, lengths, max(1, max(len(p.item_slots) for p in ps)), user_vecs,
                 keep=max(len(a) for a in ans) + 1)


class EpochBatches(Sequence):
  """One epoch's device batches, packed at their bucket length when indexed."""

  def __init__(self, enc: Encoded, plan: list[batches.Batch], pad_id: int, mesh):
    self.enc, self.plan, self.pad_id, self.mesh = enc, plan, pad_id, mesh

  def __len__(self) -> int:
    return len(self.plan)

  def __getitem__(self, i: int) -> dict:
    b = self.plan[i]
    packed = prompts.pack([self.enc.prompts[r] for r in b.rows],
                          [self.enc.answers[r] for r in b.rows], length=b.length,
                          num_slots=self.enc.num_slots, pad_id=self.pad_id)
    packed["loss_mask"] = packed["loss_mask"] * b.weight[:, None]
    packed["user_vecs"] = self.enc.user_vecs[b.rows]
    return {k: jax.device_put(v, batch_sharding(self.mesh, v.ndim)) for k, v in packed.items()}


def train_variant(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                  ctx: DomainContext, parts: VariantParts, enc: Encoded) -> None:
  """Trains one variant through the shared loop (`training.trainer`, resumable from its
  latest checkpoint); writes history.json."""
  hp = config.llm
  out = parts.directory(workdir)
  if (out / DONE).exists():
    logging.info("llm %s/%s: trained, skipped", ctx.domain, parts.variant.name)
    return
  b = hp.batch_size
  if b % batch_divisor(ctx.mesh):
    raise_batch(b, ctx.mesh)
  plan = lambda epoch: batches.train_batches(enc.lengths, b, hp.seed, epoch, hp.max_buckets)
  history = {"train_mode": parts.train_mode, "variant": parts.variant.name,
             "domain": ctx.domain, "llm": describe_llm(ctx), "prompts": len(enc.prompts),
             "steps_per_epoch": len(plan(0)),
             "padding_share": batches.padding_share(enc.lengths, plan(0)), "loss": []}
  n_train = sum(int(x.size) for x in jax.tree.leaves(parts.state["trainable"]))
  if n_train == 0 or hp.epochs == 0:
    history["note"] = "nothing to train (no soft prompts, frozen LLM, no LoRA)"
    io_utils.write_json(out / DONE, history)
    return
  step_fn = jitted_train_step(parts.model, hp.lr, enc.keep)
  frozen = parts.frozen

  def step(state, batch):
    state, metrics = step_fn(state, frozen, batch)
    return state, metrics["loss"]

  start = time.time()
  loop = LoopConfig(epochs=hp.epochs, eval_every=1,
                    checkpoint_every=config.runtime.checkpoint_every,
                    max_to_keep=config.runtime.max_to_keep, log_every_s=config.runtime.log_every_s)
  result = train_loop(parts.state, step, lambda e: EpochBatches(enc, plan(e), ctx.pad_id,
                                                                ctx.mesh),
                      None, out / "ckpt", loop, desc=f"llm {ctx.domain}/{parts.variant.name}",
                      params_of=lambda s: s["trainable"])
  history.update(loss=result.history["step_loss"], epoch_loss=result.history["epoch_loss"],
                 seconds=round(time.time() - start, 2))
  io_utils.write_json(out / DONE, history)
  logging.info("llm %s/%s: %d steps, last loss %.4f", ctx.domain, parts.variant.name,
               len(history["loss"]), history["loss"][-1])


def restore_trained(workdir: pathlib.Path, parts: VariantParts) -> dict:
  """The trained {"trainable", "opt"} state of a variant (its initial one if nothing trains)."""
  out = parts.directory(workdir)
  if not (out / DONE).exists():
    raise UserError(f"variant {parts.variant.name!r} of {parts.domain!r} is not trained: "
                    f"{out / DONE} is missing; run the llm stage first")
  if not (out / "ckpt").exists():
    return parts.state
  ckpt = Checkpointer(out / "ckpt")
  restored, _ = ckpt.restore({"state": parts.state})
  ckpt.close()
  return restored["state"]


def raise_batch(b: int, mesh) -> None:
  raise UserError(f"config.llm.batch_size={b} is not a multiple of the {batch_divisor(mesh)} "
                  "batch-parallel devices (config.mesh.shape); change one of them")


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  hp = config.llm
  for domain in [d for d in hp.domains if d]:
    ctx = load_context(config, workdir, domain)
    ex = training_examples(ctx, config.data.num_negatives, hp.seed, hp.train_targets,
                           hp.train_prompts)
    encoded = {}
    for name in hp.variants:
      parts = build_parts(config, workdir, ctx, name)
      soft = parts.variant.soft_prompts
      if soft not in encoded:
        vecs = (ctx.user_vectors(ex["history"]) if soft
                else np.zeros((len(ex["target"]), 1), np.float32))
        encoded[soft] = encode_examples(ctx.builder(soft), ex, hp.max_seq_len, vecs)
      train_variant(config, workdir, ctx, parts, encoded[soft])
      del parts
