"""What the Stage 2 train and eval stages share: tokenizer, LLM, prompts, variant parts.

`load_context` builds, for one domain, the tokenizer (the checkpoint's, or a BPE trained
on the run's titles and cached in `DIR/llm/tokenizer`), the LLM through the backbone
interface (`config.llm.checkpoint`: a Hugging Face folder of either family, a GGUF file or
a shipped name; or the random small model of `config.llm.family`, built from a fixed seed
so train and eval see the same weights), the mesh and the truncated title
tokens, the candidate sampler and the frozen SASRec user encoder, as one immutable
bundle. `build_parts` gives one variant its model, initial train state and frozen inputs.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding

from sfubm_jax.data.candidates import CandidateSampler
from sfubm_jax.data.split import DomainSplit, load_split
from sfubm_jax.data.titles import title_groups
from sfubm_jax.errors import UserError
from sfubm_jax.llm import prompts, stage2, variants
from sfubm_jax.models import projector
from sfubm_jax.models.causal_lm import backbone
from sfubm_jax.models.projector import SoftPrompts
from sfubm_jax.sharding import make_mesh, replicated


def tokenizer_texts(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[str]:
  """Texts the small-OPT tokenizer is trained on: every domain's titles, the templates."""
  texts = [config.llm.template, config.llm.template_no_soft]
  texts += list(config.llm.item_noun.values())
  for d in config.domains:
    texts += [t for t in load_split(workdir, d).titles if t]
  return texts


def load_tokenizer(config: ml_collections.ConfigDict, workdir: pathlib.Path):
  from sfubm_jax.llm.tokenizer import load_or_train_tokenizer

  if config.llm.checkpoint:  # the checkpoint's own (a GGUF's: built from its vocabulary)
    folder = backbone.resolve_checkpoint(config.llm.checkpoint)
    return load_or_train_tokenizer(folder, [], 0, workdir / "llm" / "tokenizer")
  return load_or_train_tokenizer(None, tokenizer_texts(config, workdir),
                                 config.llm.tokenizer_vocab_size, workdir / "llm" / "tokenizer")


def load_llm(config: ml_collections.ConfigDict, tokenizer, mesh) -> tuple[Any, Any, str]:
  """(backbone config, variables, train mode) of the Stage 2 LLM, in their shardings."""
  from sfubm_jax.config_check import llm_problems
  from sfubm_jax.models.causal_lm import logical

  hp = config.llm
  problems = llm_problems(config, ("llm",))  # no silent random LLM outside configs/tiny.py
  if problems:
    raise UserError("; ".join(problems))
  rules = logical.rules_from_config(config.mesh.logical_axes)
  run = dict(dtype=hp.dtype, param_dtype=hp.param_dtype, remat=hp.remat,
             lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha)
  if hp.checkpoint:
    cfg, params = backbone.load(hp.checkpoint, mesh=mesh, rules=rules, **run)
    mode = "full" if hp.train_llm else ("lora" if hp.lora_rank > 0 else "frozen")
    return cfg, params, mode
  small = dict(hp.small if hp.family == "opt" else hp.small_llama)
  if len(tokenizer) > small["vocab_size"]:
    field = "small" if hp.family == "opt" else "small_llama"
    raise UserError(f"tokenizer has {len(tokenizer)} tokens > config.llm.{field}.vocab_size="
                    f"{small['vocab_size']}; raise it or lower config.llm.tokenizer_vocab_size")
  if hp.family == "opt":
    run["dropout"] = 0.0
  cfg = backbone.config_class(hp.family)(
      **small, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
      eos_token_id=tokenizer.eos_token_id, **run)
  params = backbone.init_random(cfg, jax.random.key(hp.seed), mesh=mesh, rules=rules)
  return cfg, params, "full"  # random weights: the LLM trains with the projectors


@dataclasses.dataclass(frozen=True)
class DomainContext:
  """One domain's data, tokenizer, LLM and prompt pieces for Stage 2 (immutable).

  Built once by `load_context`; nothing in it loads, samples or caches later.
  """

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  domain: str
  split: DomainSplit
  tokenizer: Any
  llm_config: Any
  llm_params: Any
  train_mode: str
  mesh: Any
  title_tokens: list[list[int]]  # [N+1] token ids of " " + shown title
  display_titles: list[str]  # [N+1] the split's shown titles: what prompts show, answers name
  sampler: CandidateSampler  # the data stage's candidate sampler over these titles
  encode_users: Callable[[np.ndarray], np.ndarray] | None  # frozen SASRec r_u; None: unused
  stop_ids: tuple[int, ...] = ()  # decoding stops here: eos and whitespace-only "\n" tokens

  @property
  def pad_id(self) -> int:
    return int(self.tokenizer.pad_token_id)

  @property
  def eos_id(self) -> int:
    return int(self.tokenizer.eos_token_id)

  def builder(self, soft_prompts: bool) -> prompts.PromptBuilder:
    hp = self.config.llm
    return prompts.PromptBuilder(
        lambda s: self.tokenizer.encode(s, add_special_tokens=False),
        template=hp.template if soft_prompts else hp.template_no_soft,
        noun=hp.item_noun[self.domain], title_tokens=self.title_tokens,
        bos_id=int(self.tokenizer.bos_token_id), eos_id=self.eos_id, slot_id=self.pad_id,
        soft_prompts=soft_prompts, separator=hp.item_separator,
        item_slot=hp.item_slot)

  @property
  def answer_len(self) -> int:
    """Tokens of the longest answer: a shown title and eos."""
    return max(len(t) for t in self.title_tokens) + 1

  @property
  def max_new_tokens(self) -> int:
    """Greedy decoding budget: `llm.max_new_tokens`, or (0) the longest answer, so that
    every candidate title can be generated in full and then stopped."""
    return decode_budget(self.config.llm.max_new_tokens, self.answer_len)

  def sample_candidates(self, rng: np.random.Generator, target: int, touched: set[int],
                        num_negatives: int) -> np.ndarray:
    """The data stage's sampler (`data.candidates`): target + never-touched negatives."""
    return self.sampler.draw(rng, target, touched, num_negatives)[0]

  def user_vectors(self, history: np.ndarray) -> np.ndarray:
    """r_u [U, d] from the frozen SASRec (export.make_user_encoder)."""
    if self.encode_users is None:
      raise ValueError("this context was loaded without the user encoder (no variant with "
                       "soft prompts)")
    return self.encode_users(history)


def load_context(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                 domain: str) -> DomainContext:
  """Everything Stage 2 needs of `domain`; the SASRec user encoder only when a variant of
  `config.llm.variants` has soft prompts."""
  from sfubm_jax.training import export

  split = load_split(workdir, domain)
  tokenizer = load_tokenizer(config, workdir)
  mesh = make_mesh(config.mesh.shape)
  llm_config, llm_params, mode = load_llm(config, tokenizer, mesh)
  title_tokens = [[]] + [tokenizer.encode(" " + t, add_special_tokens=False)
                         for t in split.shown_titles[1:]]
  soft = any(variants.get_variant(n).soft_prompts for n in config.llm.variants)
  ctx = DomainContext(
      config, workdir, domain, split, tokenizer, llm_config, llm_params, mode, mesh,
      title_tokens, list(split.shown_titles),
      sampler=CandidateSampler(title_groups(split.shown_titles), domain=domain),
      encode_users=export.make_user_encoder(workdir, domain) if soft else None,
      stop_ids=stop_token_ids(tokenizer))
  decode_budget(config.llm.max_new_tokens, ctx.answer_len)  # cuts titles: fail before any work
  return ctx


def decode_budget(max_new_tokens: int, answer_len: int) -> int:
  """0 = `answer_len` (title + stop token of the longest shown title); a budget below it
  would cut some candidate titles short and count them as invalid answers: an error."""
  if max_new_tokens == 0:
    return answer_len
  if max_new_tokens < answer_len:
    raise UserError(
        f"config.llm.max_new_tokens={max_new_tokens} cannot generate the longest shown "
        f"title ({answer_len} tokens with its stop token), so such answers would be cut "
        f"and counted invalid; set it to 0 (= the longest answer) or at least {answer_len}")
  return max_new_tokens


def stop_token_ids(tokenizer) -> tuple[int, ...]:
  """eos and every token that is whitespace holding a newline (SPEC §7: greedy decoding
  stops at EOS or a newline; such a token carries no answer text, so nothing is cut)."""
  ids = {int(tokenizer.eos_token_id)}
  for token, i in tokenizer.get_vocab().items():
    text = tokenizer.convert_tokens_to_string([token])
    if "\n" in text and not text.strip():
      ids.add(int(i))
  return tuple(sorted(ids))


def describe_llm(ctx: DomainContext) -> dict:
  """What the report says about the LLM that ran: family, size, source, train mode."""
  cfg = ctx.llm_config
  return {"family": backbone.family_of(cfg), "params": backbone.count_params(ctx.llm_params),
          "layers": int(cfg.num_hidden_layers), "hidden": int(cfg.embed_dim),
          "source": ctx.config.llm.checkpoint or "random init (configs/tiny.py)",
          "train_mode": ctx.train_mode}


PROJECTOR_INITS = ("token_rms", "plain", "title_fit")
TITLE_FIT_STEPS = 300  # full-batch Adam steps of the "title_fit" init (lr TITLE_FIT_LR)
TITLE_FIT_LR = 3e-3
PROMPT_INIT_USERS = 512  # train users whose r_u set P_u's initial output scale
RMS_SAMPLE_TOKENS = 4096  # token ids (evenly spaced over the vocabulary) behind token_rms


def token_rms(llm, llm_params) -> float:
  """Root-mean-square of the LLM's input token embeddings (an evenly spaced id sample)."""
  vocab = int(llm.config.vocab_size)
  ids = jnp.arange(0, vocab, max(1, vocab // RMS_SAMPLE_TOKENS), dtype=jnp.int32)
  emb = llm.apply(llm_params, ids[None], method="embed_tokens").astype(jnp.float32)
  return float(jnp.sqrt(jnp.mean(jnp.square(emb))))


def title_embeddings(llm, llm_params, title_tokens: list[list[int]]) -> np.ndarray:
  """[N+1, D] the mean input token embedding of each item's shown-title tokens (0 if none)."""
  length = max(1, max(len(t) for t in title_tokens))
  ids = np.zeros((len(title_tokens), length), np.int32)
  mask = np.zeros((len(title_tokens), length), np.float32)
  for i, t in enumerate(title_tokens):
    ids[i, : len(t)], mask[i, : len(t)] = t, 1.0
  emb = llm.apply(llm_params, jnp.asarray(ids), method="embed_tokens").astype(jnp.float32)
  m = jnp.asarray(mask)[..., None]
  return np.asarray(jnp.sum(emb * m, 1) / jnp.maximum(jnp.sum(m, 1), 1.0))


def title_fit(ctx: DomainContext, model, module, params, items: np.ndarray
              ) -> tuple[dict, dict[str, float]]:
  """The "title_fit" init: P_i fitted to map ẽ_i to item i's mean title token embedding,
  P_u to map r_u (train history minus its last item) to the last train item's, on every
  train user (train split only) — so soft prompts start as the words they stand for."""
  from sfubm_jax.llm.train_stage import training_pairs

  titles = title_embeddings(model.llm, ctx.llm_params, ctx.title_tokens)
  history, target, _ = training_pairs(ctx.split.history("train")[0], "last")
  return projector.fit_targets(
      params, module, jnp.asarray(ctx.user_vectors(history)), jnp.asarray(titles[target]),
      jnp.asarray(items[1:]), jnp.asarray(titles[1:]), steps=TITLE_FIT_STEPS, lr=TITLE_FIT_LR)


@dataclasses.dataclass
class VariantParts:
  """One variant: model, initial {"trainable", "opt"} state, frozen inputs, train mode."""

  variant: variants.Variant
  domain: str
  model: stage2.Stage2Model
  state: dict
  frozen: dict
  train_mode: str

  def directory(self, workdir: pathlib.Path) -> pathlib.Path:
    return workdir / "llm" / self.domain / self.variant.name


def build_parts(config: ml_collections.ConfigDict, workdir: pathlib.Path, ctx: DomainContext,
                name: str) -> VariantParts:
  """Model and fresh train state of variant `name` (P_u/P_i init from the llm seed)."""
  from sfubm_jax.training import export

  hp = config.llm
  variant = variants.get_variant(name)
  width = ctx.llm_config.embed_dim
  rep = replicated(ctx.mesh)
  if variant.soft_prompts:
    items = export.load_item_embeddings(workdir, ctx.domain, variant.item_source)  # [N+1, d]
    if items.shape[0] != ctx.split.num_items + 1:
      raise UserError(f"{variant.item_source} item embeddings of {ctx.domain!r} have "
                      f"{items.shape[0]} rows, the data has {ctx.split.num_items + 1}; rerun "
                      "the pretrain/fkd stages in this --workdir")
    user_dim = int(ctx.user_vectors(ctx.split.seqs[:1, :-2]).shape[1])
    hidden = variants.projector_hidden(variant, hp.projector_hidden)
    prompts_module = SoftPrompts(out_dim=width, hidden=hidden,
                                 user_activation=hp.user_activation,
                                 item_activation=hp.item_activation)
  else:
    items, user_dim, prompts_module = np.zeros((1, 1), np.float32), 1, None
  model = stage2.Stage2Model(backbone.build(ctx.llm_config), prompts_module)
  prompt_params = model.init_prompts(jax.random.fold_in(jax.random.key(hp.seed), 1), user_dim,
                                     items.shape[1])
  if prompts_module is not None and hp.projector_init == "token_rms":
    users = ctx.user_vectors(ctx.split.history("train")[0][:PROMPT_INIT_USERS])
    prompt_params = projector.match_rms(prompt_params, jnp.asarray(users),
                                        jnp.asarray(items[None, 1:]), prompts_module,
                                        token_rms(model.llm, ctx.llm_params))
  if prompts_module is not None and hp.projector_init == "title_fit":
    prompt_params, fit = title_fit(ctx, model, prompts_module, prompt_params, items)
    logging.info("llm %s/%s: title_fit init, relative MSE user %.3f -> %.3f, item %.3f -> "
                 "%.3f", ctx.domain, name, fit["user_rel_mse_before"], fit["user_rel_mse"],
                 fit["item_rel_mse_before"], fit["item_rel_mse"])
  train_llm, frozen_llm = stage2.split_llm_params(ctx.llm_params, ctx.train_mode)
  trainable = {"prompts": jax.device_put(prompt_params, rep),
               "llm": jax.tree.map(jnp.copy, train_llm)}  # copies: the step donates them
  state = {"trainable": trainable, "opt": jax.jit(optax.adam(hp.lr).init)(trainable)}
  # Everything on the mesh (scalars such as Adam's count replicated), so that a state
  # restored from a checkpoint has the same shardings as a fresh one.
  state = jax.tree.map(
      lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, rep), state)
  frozen = {"llm": frozen_llm, "items": jax.device_put(jnp.asarray(items), rep)}
  return VariantParts(variant, ctx.domain, model, state, frozen, ctx.train_mode)
