"""The LLM tokenizer: a checkpoint's own, or a byte-level BPE trained on the dataset.

With a checkpoint the tokenizer comes from its Hugging Face folder (`AutoTokenizer`; for
a GGUF file, the folder it is dequantised into holds the tokenizer built from the file's
vocabulary). The small from-scratch model of the CPU variants has no tokenizer, so one
is trained on the dataset's texts with `tokenizers` (byte-level BPE: every string is
encodable) using OPT's special-token ids — `<s>` 0, `<pad>` 1, `</s>` 2 (eos, and
prepended as bos like OPT's tokenizer), `<unk>` 3. Training is deterministic for the
same texts; the result is saved in `cache_dir` with a fingerprint of (texts, vocab_size)
and reused while it matches.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Sequence

from sfubm_jax import io_utils
from sfubm_jax.errors import UserError

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0, 1, 2, 3 as in OPT
PAD_ID, EOS_ID, BOS_ID, UNK_ID = 1, 2, 2, 3
_FINGERPRINT = "sfubm_fingerprint.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


def fingerprint(texts: Sequence[str], vocab_size: int) -> str:
  """Hash of what the trained tokenizer depends on."""
  h = hashlib.sha256(f"byte-level-bpe|{vocab_size}|{len(texts)}".encode())
  for text in texts:
    h.update(text.encode("utf-8"))
    h.update(b"\x00")
  return h.hexdigest()


def train_bpe(texts: Sequence[str], vocab_size: int):
  """A PreTrainedTokenizerFast: byte-level BPE over `texts` with OPT's special ids."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
  from transformers import PreTrainedTokenizerFast

  tok = Tokenizer(models.BPE(unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), min_frequency=2,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
  )
  tok.train_from_iterator(list(texts), trainer=trainer)
  tok.post_processor = processors.TemplateProcessing(
      single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", BOS_ID)]
  )
  return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>",
                                 pad_token="<pad>", unk_token="<unk>")


def load_or_train_tokenizer(checkpoint_dir: str | pathlib.Path | None, texts: Sequence[str],
                            vocab_size: int, cache_dir: str | pathlib.Path):
  """The checkpoint's tokenizer if `checkpoint_dir` is set; else a cached trained BPE."""
  from transformers import AutoTokenizer

  if checkpoint_dir:
    folder = pathlib.Path(checkpoint_dir)
    if not any((folder / f).exists() for f in _TOKENIZER_FILES):
      raise UserError(f"{folder} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); "
                      "download the checkpoint's tokenizer into the same folder")
    return AutoTokenizer.from_pretrained(str(folder))
  cache = pathlib.Path(cache_dir)
  stamp = {"fingerprint": fingerprint(texts, vocab_size), "vocab_size": vocab_size}
  if (cache / _FINGERPRINT).exists() and io_utils.read_json(cache / _FINGERPRINT) == stamp:
    return AutoTokenizer.from_pretrained(str(cache))
  if not texts:
    raise UserError(f"no texts to train the tokenizer in {cache} on (and no checkpoint)")
  tokenizer = train_bpe(texts, vocab_size)
  with io_utils.atomic_directory(cache) as tmp:
    tokenizer.save_pretrained(str(tmp))
    io_utils.write_json(tmp / _FINGERPRINT, stamp)
  return AutoTokenizer.from_pretrained(str(cache))
