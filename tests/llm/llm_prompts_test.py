"""Prompt building: slot positions, per-domain templates, truncation, packing."""

import numpy as np
import pytest

from sfubm_jax.errors import UserError
from sfubm_jax.llm import prompts

TEMPLATE = "Bought {noun}: {history}. Pref: {user}. From {candidates}, next:"
NO_SOFT = "Bought {noun}: {history}. From {candidates}, next:"
SLOT, BOS, EOS, PAD = 1, 2, 3, 0


def encode(text):
  """A character tokenizer: ids 100 + code point (independent of any BPE)."""
  return [100 + ord(ch) for ch in text]


def decode(ids):
  return "".join(chr(i - 100) for i in ids if i >= 100)


def builder(soft=True, noun="snacks", max_title=3, template=None, separator=",",
            item_slot="after"):
  titles = ["", "abcdef", "gh", "ijkl", "mn"]
  title_tokens = [encode(" " + t)[:max_title] if t else [] for t in titles]
  return prompts.PromptBuilder(
      encode, template=template or (TEMPLATE if soft else NO_SOFT), noun=noun,
      title_tokens=title_tokens, bos_id=BOS, eos_id=EOS, slot_id=SLOT, soft_prompts=soft,
      separator=separator, item_slot=item_slot,
  )


def test_slots_follow_their_titles_and_text_reads_back():
  b = builder()
  p = b.build(history=[0, 0, 1, 2], candidates=[3, 4])
  assert p.ids[0] == BOS
  # Every item slot sits right after that item's (truncated) title tokens.
  for pos, item in p.item_slots:
    assert p.ids[pos] == SLOT
    title = b.title_tokens[item]
    assert p.ids[pos - len(title) : pos] == title
  assert [i for _, i in p.item_slots] == [1, 2, 3, 4]
  assert p.ids[p.user_slot] == SLOT
  text = decode([i if i != SLOT else 100 + ord("#") for i in p.ids[1:]])
  # One space before each title (its own), none doubled by the template's.
  assert text == "Bought snacks: ab#, gh#. Pref: #. From ij#, mn#, next:"


def test_item_slot_before_puts_each_slot_right_before_its_title():
  b = builder(item_slot="before")
  p = b.build(history=[0, 1, 2], candidates=[3, 4])
  for pos, item in p.item_slots:
    assert p.ids[pos] == SLOT
    title = b.title_tokens[item]
    assert p.ids[pos + 1 : pos + 1 + len(title)] == title
  assert [i for _, i in p.item_slots] == [1, 2, 3, 4]
  text = decode([i if i != SLOT else 100 + ord("#") for i in p.ids[1:]])
  # The slot takes the place where the list's space was; the title keeps its own.
  assert text == "Bought snacks:# ab,# gh. Pref: #. From# ij,# mn, next:"
  with pytest.raises(UserError, match="item_slot"):
    builder(item_slot="middle")


def test_template_noun_per_domain_and_no_soft_variant():
  p = builder(soft=False, noun="kitchen products").build([1], [2, 3])
  assert p.item_slots == [] and p.user_slot == -1 and SLOT not in p.ids
  assert decode(p.ids) == "Bought kitchen products: ab. From gh, ij, next:"


def test_item_separator_puts_one_title_per_line():
  p = builder(soft=False, template="Bought:\n-{history}\nFrom:\n-{candidates}\nNext:",
              separator="\n-").build([1, 2], [3, 4])
  assert decode(p.ids) == "Bought:\n- ab\n- gh\nFrom:\n- ij\n- mn\nNext:"


def test_template_errors():
  with pytest.raises(UserError):
    builder(soft=False, template=TEMPLATE)  # {user} without soft prompts
  with pytest.raises(UserError):
    builder(soft=True, template=NO_SOFT)  # soft prompts need {user}
  with pytest.raises(UserError):
    builder(template="no fields")


def test_pack_left_pads_and_marks_answer_tokens():
  b = builder()
  p = b.build([1], [2, 3])
  ans = b.answer(2)
  assert ans == encode(" gh") + [EOS]
  t, s = 64, 4
  batch = prompts.pack([p], [ans], length=t, num_slots=s, pad_id=PAD)
  seq = p.ids + ans
  off = t - len(seq)
  np.testing.assert_array_equal(batch["input_ids"][0, off:], seq)
  assert batch["attention_mask"][0].sum() == len(seq) and batch["attention_mask"][0, off] == 1
  ids = batch["input_ids"][0]
  assert all(ids[batch["item_pos"][0, k]] == SLOT for k in range(len(p.item_slots)))
  assert batch["item_pos"][0, len(p.item_slots)] == t  # unused slots point past the end
  assert ids[batch["user_pos"][0]] == SLOT
  # labels[t] = token t+1; the loss mask covers exactly the answer tokens.
  masked = batch["labels"][0][batch["loss_mask"][0] > 0]
  np.testing.assert_array_equal(masked, ans)
  with pytest.raises(UserError):
    prompts.pack([p], [ans], length=len(seq) - 1, num_slots=s, pad_id=PAD)


def test_pack_candidates_rows():
  b = builder()
  p = b.build([1], [2, 3])
  answers = [[b.answer(2), b.answer(3)]]
  out = prompts.pack_candidates([p], answers, prompt_length=56, answer_length=5, num_slots=4,
                                pad_id=PAD)
  assert out["input_ids"].shape == (2, 61)
  for c in range(2):
    row = out["input_ids"][c]
    mask = out["attention_mask"][c].astype(bool)
    np.testing.assert_array_equal(row[mask], p.ids + answers[0][c])
    np.testing.assert_array_equal(out["labels"][c][out["loss_mask"][c] > 0], answers[0][c])
    assert row[out["user_pos"][c]] == SLOT
