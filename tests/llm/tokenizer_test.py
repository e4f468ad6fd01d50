"""The trained byte-level BPE: OPT's special ids, round trips, determinism, caching."""

import pytest

from sfubm_jax.errors import UserError
from sfubm_jax.llm import tokenizer as tokenizer_lib
from sfubm_jax.llm.tokenizer import load_or_train_tokenizer

TEXTS = [
    "Organic green tea, 100 bags. A calming blend of sencha and mint.",
    "Stainless steel chef knife — 8 inch, full tang",
    "Café crème moisturiser 50 ml for dry skin",
    "The Lord of the Rings: The Fellowship of the Ring",
] * 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  cache = tmp_path_factory.mktemp("tok") / "cache"
  return cache, load_or_train_tokenizer("", TEXTS, 320, cache)


def test_special_tokens_have_opt_ids_and_bos_is_prepended(trained):
  _, tok = trained
  assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
  assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (1, 2, 2, 3)
  ids = tok("green tea")["input_ids"]
  assert ids[0] == 2 and 2 not in ids[1:]
  assert len(tok) == 320


@pytest.mark.parametrize("text", ["Café crème ✓ 日本", "  two  spaces\nand a newline", "tea"])
def test_any_text_round_trips(trained, text):
  _, tok = trained
  ids = tok(text, add_special_tokens=False)["input_ids"]
  assert tok.unk_token_id not in ids
  assert tok.decode(ids) == text


def test_merges_learn_the_corpus(trained):
  _, tok = trained
  seen = len(tok("the Fellowship of the Ring", add_special_tokens=False)["input_ids"])
  unseen = len(tok("qzx vwk jjq fpy", add_special_tokens=False)["input_ids"])
  assert seen < 12 and unseen >= 12  # frequent words are few tokens, random letters are not


def test_deterministic_and_cached(trained, tmp_path, monkeypatch):
  cache, tok = trained
  again = load_or_train_tokenizer("", TEXTS, 320, tmp_path / "other")
  assert again.get_vocab() == tok.get_vocab()

  def no_training(*args):
    raise AssertionError("retrained although the cache matches")

  monkeypatch.setattr(tokenizer_lib, "train_bpe", no_training)
  cached = load_or_train_tokenizer("", TEXTS, 320, cache)
  assert cached.get_vocab() == tok.get_vocab()
  assert cached("green tea")["input_ids"] == tok("green tea")["input_ids"]
  with pytest.raises(AssertionError, match="retrained"):
    load_or_train_tokenizer("", TEXTS[:-1], 320, cache)  # other texts: cache is stale


def test_checkpoint_folder(trained, tmp_path):
  _, tok = trained
  with pytest.raises(UserError, match="no tokenizer files"):
    load_or_train_tokenizer(tmp_path, TEXTS, 320, tmp_path / "unused")
  tok.save_pretrained(tmp_path / "ckpt")
  loaded = load_or_train_tokenizer(tmp_path / "ckpt", [], 320, tmp_path / "unused")
  assert loaded.get_vocab() == tok.get_vocab()
  assert not (tmp_path / "unused").exists()
