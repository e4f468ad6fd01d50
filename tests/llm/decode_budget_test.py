"""The greedy decoding budget lets every candidate title be named in full."""

import pytest

from configs import common
from sfubm_jax.errors import UserError
from sfubm_jax.llm.context import decode_budget


def test_zero_is_the_longest_answer():
  assert decode_budget(0, 23) == 23


def test_a_larger_budget_is_kept():
  assert decode_budget(40, 23) == 40
  assert decode_budget(23, 23) == 23


def test_a_budget_that_cuts_titles_is_an_error_naming_the_fix():
  # The old `:cpu` budget (16) against a 23-token food title: the answer would be cut
  # and counted invalid (11 of sfubm's 33 invalid food answers were such cuts).
  with pytest.raises(UserError, match=r"max_new_tokens=16 .*\(23 tokens.*set it to 0"):
    decode_budget(16, 23)


@pytest.mark.parametrize("pair", ["food_kitchen", "books_movielens", "health_beauty"])
@pytest.mark.parametrize("variant", ["", "cpu", "tiny"])
def test_shipped_configs_size_the_budget_from_the_titles(pair, variant):
  assert common.get_config(pair, variant).llm.max_new_tokens == 0
