"""Text encoding: the disk cache, and the shipped model against a transformers reference."""

import numpy as np
import pytest

from sfubm_jax.errors import UserError
from sfubm_jax.federation import text_encoder


class CountingEncoder:
  """A deterministic stand-in encoder that records every text it is asked to encode."""

  def __init__(self):
    self.seen = []

  def __call__(self, texts):
    self.seen.extend(texts)
    return np.stack([np.frombuffer(t.encode().ljust(8, b"x")[:8], np.uint8) + 1.0 for t in texts])


def test_cache_encodes_each_text_once(tmp_path):
  enc = CountingEncoder()
  texts = ["apple pie", "steel pan", "apple pie", "tea"]
  first = text_encoder.encode_texts(texts, model="all-MiniLM-L6-v2", cache_dir=tmp_path,
                                    encoder=enc)
  # Duplicates encoded once, shortest first (ties in first-seen order).
  assert enc.seen == ["tea", "apple pie", "steel pan"]
  np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(first[0], first[2])
  # Each row is its own text's vector, whatever the encoding order.
  want = CountingEncoder()(texts)
  np.testing.assert_allclose(first, want / np.linalg.norm(want, axis=1, keepdims=True),
                             rtol=1e-6)
  enc.seen.clear()
  again = text_encoder.encode_texts(texts, model="all-MiniLM-L6-v2", cache_dir=tmp_path,
                                    encoder=enc)
  assert enc.seen == []  # a rerun encodes nothing
  np.testing.assert_array_equal(again, first)
  more = text_encoder.encode_texts(["tea", "knife"], model="all-MiniLM-L6-v2",
                                   cache_dir=tmp_path, encoder=enc)
  assert enc.seen == ["knife"]  # a changed subset encodes only what is new
  np.testing.assert_array_equal(more[0], first[3])


def test_batches_hold_texts_of_similar_length(tmp_path):
  """Texts are batched shortest first: a batch pads to its longest text."""
  batches = []
  enc = CountingEncoder()
  record = lambda texts: batches.append(list(texts)) or enc(texts)
  texts = ["a much longer text here", "ab", "a medium one", "abc", "a long text, longer", "x"]
  out = text_encoder.encode_texts(texts, model="all-MiniLM-L6-v2", cache_dir=tmp_path,
                                  batch_size=2, encoder=record)
  assert batches == [["x", "ab"], ["abc", "a medium one"],
                     ["a long text, longer", "a much longer text here"]]
  want = CountingEncoder()(texts)
  np.testing.assert_allclose(out, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-6)


def test_cache_is_keyed_by_model(tmp_path):
  model_dir = tmp_path / "my-sbert"
  model_dir.mkdir()
  (model_dir / "modules.json").write_text("[]")
  enc = CountingEncoder()
  text_encoder.encode_texts(["tea"], model="all-MiniLM-L6-v2", cache_dir=tmp_path, encoder=enc)
  text_encoder.encode_texts(["tea"], model=str(model_dir), cache_dir=tmp_path, encoder=enc)
  assert enc.seen == ["tea", "tea"]
  assert (text_encoder.cache_directory(tmp_path, "all-MiniLM-L6-v2")
          != text_encoder.cache_directory(tmp_path, str(model_dir)))


def test_missing_model_directory_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="not a sentence-transformers directory"):
    text_encoder.model_path(str(tmp_path / "nowhere"))


def test_shipped_model_equals_normalised_mean_pooling_in_transformers(tmp_path):
  torch = pytest.importorskip("torch")
  from transformers import AutoModel, AutoTokenizer

  texts = ["Stainless steel frying pan. 28 cm, induction ready", "Green tea, 100 bags", "x"]
  ours = text_encoder.encode_texts(texts, model="all-MiniLM-L6-v2", cache_dir=tmp_path)
  path = text_encoder.model_path("all-MiniLM-L6-v2")
  tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
  batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
  with torch.no_grad():
    hidden = model(**batch).last_hidden_state  # [B, T, 384]
  mask = batch["attention_mask"][..., None].float()
  ref = (hidden * mask).sum(1) / mask.sum(1)
  ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
  assert ours.shape == (3, 384)
  np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_interrupted_encoding_keeps_finished_shards(tmp_path, monkeypatch):
  monkeypatch.setattr(text_encoder, "SHARD_TEXTS", 2)
  texts = [f"text {i}" for i in range(5)]

  class Failing(CountingEncoder):
    def __call__(self, batch):
      if len(self.seen) >= 3:
        raise KeyboardInterrupt
      return super().__call__(batch)

  with pytest.raises(KeyboardInterrupt):
    text_encoder.encode_texts(texts, model="all-MiniLM-L6-v2", cache_dir=tmp_path,
                              batch_size=1, encoder=Failing())
  enc = CountingEncoder()
  text_encoder.encode_texts(texts, model="all-MiniLM-L6-v2", cache_dir=tmp_path,
                            batch_size=1, encoder=enc)
  assert enc.seen == ["text 2", "text 3", "text 4"]  # the first shard (2 texts) was kept
