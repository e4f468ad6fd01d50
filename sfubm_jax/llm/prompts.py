"""Hybrid prompts as token-id segments with soft-prompt slot positions (SPEC §7).

A prompt is built from the config template (fields {noun}, {history}, {user},
{candidates}) without ever tokenising a slot marker: text pieces are tokenised
separately and concatenated (spaces before a title list dropped: every title token run
starts with its space), titles are joined by `separator`, and each item's shown title
(SPEC §1, stored with the split) is followed (`item_slot="after"`, SPEC §7's example) or
preceded (`"before"`) by one slot position whose input embedding Stage 2 replaces with
P_i(ẽ_i); the {user} field is one slot replaced with P_u(r_u).
Without soft prompts (`llm_only`) the same items appear as titles only and the template
must have no {user} field.

Packing is left-padded to a given length: the stages pass a bucket length
(`llm.batches`), so one jitted step serves every batch of a bucket.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np

from sfubm_jax.errors import UserError

FIELDS = ("history", "user", "candidates")
ITEM_SLOTS = ("after", "before")  # where an item's soft-prompt slot sits beside its title
_FIELD_RE = re.compile(r"\{(history|user|candidates)\}")


@dataclasses.dataclass(frozen=True)
class Prompt:
  """One prompt: token ids (bos first), item slots (position, item index), user slot."""

  ids: list[int]
  item_slots: list[tuple[int, int]]
  user_slot: int  # position, -1 = none


class PromptBuilder:
  """Builds prompts of one domain from pre-tokenised, truncated item titles."""

  def __init__(
      self,
      encode: Callable[[str], list[int]],
      *,
      template: str,
      noun: str,
      title_tokens: Sequence[Sequence[int]],
      bos_id: int,
      eos_id: int,
      slot_id: int,
      soft_prompts: bool,
      separator: str = ",",
      item_slot: str = "after",
  ):
    if item_slot not in ITEM_SLOTS:
      raise UserError(f"config.llm.item_slot={item_slot!r}: expected one of {ITEM_SLOTS}")
    text = template.replace("{noun}", noun)
    self.pieces: list[list[int] | str] = []  # token-id text pieces and field names
    pos = 0
    for m in _FIELD_RE.finditer(text):
      head = text[pos : m.start()]
      if m.group(1) != "user":  # each title brings its own leading space
        head = head.rstrip(" ")
      if head:
        self.pieces.append(list(encode(head)))
      self.pieces.append(m.group(1))
      pos = m.end()
    if text[pos:]:
      self.pieces.append(list(encode(text[pos:])))
    fields = [p for p in self.pieces if isinstance(p, str)]
    for f in ("history", "candidates"):
      if fields.count(f) != 1:
        raise UserError(f"prompt template {template!r} needs exactly one {{{f}}} field")
    if soft_prompts and fields.count("user") != 1:
      raise UserError(f"prompt template {template!r} needs one {{user}} field for soft prompts")
    if not soft_prompts and "user" in fields:
      raise UserError(
          f"prompt template {template!r} of a variant without soft prompts must not have a "
          "{user} field (see config.llm.template_no_soft)"
      )
    self.title_tokens = [list(t) for t in title_tokens]
    self.separator = list(encode(separator))
    self.bos_id, self.eos_id, self.slot_id = bos_id, eos_id, slot_id
    self.soft_prompts = soft_prompts
    self.slot_before = item_slot == "before"

  def _items(self, items: Sequence[int], ids: list[int], slots: list[tuple[int, int]]) -> None:
    for k, item in enumerate(items):
      if k:
        ids.extend(self.separator)
      if self.soft_prompts and self.slot_before:
        slots.append((len(ids), int(item)))
        ids.append(self.slot_id)
      ids.extend(self.title_tokens[int(item)])
      if self.soft_prompts and not self.slot_before:
        slots.append((len(ids), int(item)))
        ids.append(self.slot_id)

  def build(self, history: Sequence[int], candidates: Sequence[int]) -> Prompt:
    """The prompt for `history` (item indices, padding 0 ignored) and `candidates`."""
    ids, slots, user_slot = [self.bos_id], [], -1
    for piece in self.pieces:
      if piece == "history":
        self._items([i for i in history if i > 0], ids, slots)
      elif piece == "candidates":
        self._items(candidates, ids, slots)
      elif piece == "user":
        user_slot = len(ids)
        ids.append(self.slot_id)
      else:
        ids.extend(piece)
    return Prompt(ids, slots, user_slot)

  def answer(self, item: int) -> list[int]:
    """Target tokens: the truncated title (which starts with its space) and eos."""
    return self.title_tokens[int(item)] + [self.eos_id]


def round_up(n: int, multiple: int = 8) -> int:
  return -(-n // multiple) * multiple


def check_length(length: int, limit: int) -> None:
  if length > limit:
    raise UserError(
        f"a prompt needs {length} tokens, more than config.llm.max_seq_len={limit}; raise it "
        "(and the LLM's max_position_embeddings) or lower config.data.max_title_words"
    )


def pack(
    prompts: Sequence[Prompt],
    answers: Sequence[Sequence[int]] | None,
    *,
    length: int,
    num_slots: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
  """Left-padded batch of prompt (+ answer) sequences.

  Returns input_ids [B, T], attention_mask [B, T], item_pos [B, S] (T = no slot, dropped
  by the scatter), item_ids [B, S], user_pos [B] (T = none), and when answers are given
  labels [B, T] (labels[t] = token t+1) and loss_mask [B, T] (1 where token t+1 is an
  answer token).
  """
  b = len(prompts)
  out = {
      "input_ids": np.full((b, length), pad_id, np.int32),
      "attention_mask": np.zeros((b, length), np.int32),
      "item_pos": np.full((b, num_slots), length, np.int32),
      "item_ids": np.zeros((b, num_slots), np.int32),
      "user_pos": np.full((b,), length, np.int32),
  }
  if answers is not None:
    out["labels"] = np.full((b, length), pad_id, np.int32)
    out["loss_mask"] = np.zeros((b, length), np.float32)
  for r, p in enumerate(prompts):
    answer = list(answers[r]) if answers is not None else []
    seq = p.ids + answer
    check_length(len(seq), length)
    if len(p.item_slots) > num_slots:
      raise ValueError(f"{len(p.item_slots)} slots > num_slots={num_slots}")
    off = length - len(seq)
    out["input_ids"][r, off:] = seq
    out["attention_mask"][r, off:] = 1
    for k, (pos, item) in enumerate(p.item_slots):
      out["item_pos"][r, k] = off + pos
      out["item_ids"][r, k] = item
    if p.user_slot >= 0:
      out["user_pos"][r] = off + p.user_slot
    if answers is not None:
      out["labels"][r, off : length - 1] = seq[1:]
      start = off + len(p.ids) - 1  # position whose next token is the first answer token
      out["loss_mask"][r, start : start + len(answer)] = 1.0
  return out


def pack_candidates(
    prompts: Sequence[Prompt],
    candidate_answers: Sequence[Sequence[Sequence[int]]],
    *,
    prompt_length: int,
    answer_length: int,
    num_slots: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
  """Each prompt (left-padded to P) followed by each of its C answers (right-padded to A).

  Returns the `pack` fields for B*C rows of length P + A (row b*C + c = prompt b with
  answer c); labels/loss_mask mark the answer tokens, so the masked sum of token
  log-probs is log p(answer | prompt).
  """
  base = pack(prompts, None, length=prompt_length, num_slots=num_slots, pad_id=pad_id)
  c = len(candidate_answers[0])
  t = prompt_length + answer_length
  rows = len(prompts) * c
  out = {k: np.repeat(v, c, axis=0) for k, v in base.items()}
  out["input_ids"] = np.concatenate(
      [out["input_ids"], np.full((rows, answer_length), pad_id, np.int32)], axis=1
  )
  out["attention_mask"] = np.concatenate(
      [out["attention_mask"], np.zeros((rows, answer_length), np.int32)], axis=1
  )
  out["item_pos"] = np.where(out["item_pos"] == prompt_length, t, out["item_pos"])
  out["user_pos"] = np.where(out["user_pos"] == prompt_length, t, out["user_pos"])
  out["labels"] = np.full((rows, t), pad_id, np.int32)
  out["loss_mask"] = np.zeros((rows, t), np.float32)
  for b, answers in enumerate(candidate_answers):
    for k, ans in enumerate(answers):
      r = b * c + k
      if len(ans) > answer_length:
        raise ValueError(f"answer of {len(ans)} tokens > answer_length={answer_length}")
      out["input_ids"][r, prompt_length : prompt_length + len(ans)] = ans
      out["attention_mask"][r, prompt_length : prompt_length + len(ans)] = 1
      out["labels"][r, prompt_length - 1 : prompt_length - 1 + len(ans)] = ans
      out["loss_mask"][r, prompt_length - 1 : prompt_length - 1 + len(ans)] = 1.0
  return out
