"""The one candidate sampler and title normaliser (SPEC §1), on hand cases and the shipped data."""

import numpy as np
import pytest
from conftest import load_config

from sfubm_jax.data import stage
from sfubm_jax.data.candidates import CandidateSampler, touched_items
from sfubm_jax.data.split import load_split
from sfubm_jax.data.titles import normalize, shown_title, title_groups
from sfubm_jax.errors import UserError
from sfubm_jax.llm import answers


def test_normalize_is_the_answer_normaliser():
  assert answers.normalize is normalize
  assert normalize('  "Ｔhe  Best\tTea!" \nmore') == "the best tea"
  assert normalize("ﬁne") == normalize("FINE")


def test_shown_title_and_groups():
  assert shown_title("  The  Lord of\tthe Rings ", 3) == "The Lord of"
  # A cut leaves no dangling separator; a title of separators only stays as it is.
  assert shown_title("Community Coffee Ground Coffee, Dark Roast, 12", 6) == (
      "Community Coffee Ground Coffee, Dark Roast")
  assert shown_title("Tea - Green & Mint", 2) == "Tea" and shown_title("Tea -", 5) == "Tea"
  assert shown_title("Salt (Pack of 2)", 3) == "Salt (Pack of" and shown_title(",", 3) == ","
  shown = ["", "A b c", "a B c!", "x", '"X"']
  groups = title_groups(shown)
  assert groups[0] == -1 and groups[1] == groups[2] and groups[3] == groups[4]
  assert groups[1] != groups[3]


def test_negatives_are_uniform_over_untouched_items():
  sampler = CandidateSampler(np.arange(31) - 1)  # all titles distinct; item 0 = padding
  rng = np.random.default_rng(0)
  counts = np.zeros(31)
  touched = {1, 2, 3, 4, 5}
  for _ in range(3000):
    cands, pos = sampler.draw(rng, 1, touched, 1)
    assert cands[pos] == 1
    counts[cands[1 - pos]] += 1
  assert counts[list(touched)].sum() == 0 and counts[0] == 0
  expected = 3000 / 25
  chi2 = ((counts[6:] - expected) ** 2 / expected).sum()
  assert chi2 < 52.6  # 24 degrees of freedom, p = 0.001


def test_too_few_distinct_titles_is_an_error():
  sampler = CandidateSampler(title_groups(["", "a", "a", "b", "c"]), domain="d")
  with pytest.raises(UserError, match="only 1 untouched items with distinct shown titles"):
    sampler.draw(np.random.default_rng(0), 1, {4}, 2)


@pytest.mark.parametrize("pair", ["food_kitchen"])
def test_shipped_data_candidate_lists(tmp_path, pair):
  config = load_config(pair, "cpu")
  stage.run(config, tmp_path)
  for domain in config.domains:
    split = load_split(tmp_path, domain)
    words = config.data.max_title_words
    assert split.shown_titles == [""] + [shown_title(t, words) for t in split.titles[1:]]
    for which, col in (("valid", -2), ("test", -1)):
      cands, pos = split.candidates(which)
      assert np.all(cands[np.arange(len(pos)), pos] == split.seqs[:, col])
      for row in range(split.num_users):
        touched = touched_items(split.seqs[row])
        negatives = np.delete(cands[row], pos[row]).tolist()
        assert not touched & set(negatives), (domain, which, row)
        shown = {normalize(split.shown_titles[i]) for i in cands[row]}
        assert len(shown) == cands.shape[1], (domain, which, row)
