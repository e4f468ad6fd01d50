"""The one title normaliser and the shown form of a title (SPEC §1, §7).

`shown_title` is what every prompt displays and what a generated answer must name: the
title cut to its first `max_words` whitespace-separated words (a tokenizer-independent
cut, so the data stage can fix it before any LLM tokenizer exists). `normalize` is the
comparison form of a shown title or a generation: first line only, Unicode NFKC, lower
case, quote characters removed, surrounding punctuation stripped, whitespace collapsed.
Two items whose shown titles normalise equal are the same answer: candidate lists never
hold both (`sfubm_jax.data.candidates`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

import numpy as np

_QUOTES = "\"'`\u2018\u2019\u201c\u201d\u00ab\u00bb"
_STRIP = string.punctuation + string.whitespace + "\u2026\u2013\u2014"
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
  """The comparison form of a title or a generation."""
  text = text.split("\n", 1)[0]
  text = unicodedata.normalize("NFKC", text).lower()
  text = text.translate({ord(q): None for q in _QUOTES})
  text = _WS.sub(" ", text).strip(_STRIP)
  return _WS.sub(" ", text).strip()


_DANGLING = ",;:-/&(\u2013\u2014 "


def shown_title(title: str, max_words: int) -> str:
  """The title as prompts show it: its first `max_words` words, single-spaced, without
  the separators a cut leaves dangling at its end ("Dark Roast," -> "Dark Roast")."""
  cut = " ".join(title.split()[:max_words])
  return cut.rstrip(_DANGLING) or cut


def title_groups(shown: Sequence[str]) -> np.ndarray:
  """[N+1] int64: equal ids <=> equal normalised shown titles; index 0 (padding) = -1."""
  ids: dict[str, int] = {}
  groups = np.full(len(shown), -1, dtype=np.int64)
  for i, title in enumerate(shown[1:], 1):
    groups[i] = ids.setdefault(normalize(title), len(ids))
  return groups
