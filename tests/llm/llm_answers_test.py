"""Answer normalisation, validity and Hit@1 on hand cases."""

import numpy as np

from sfubm_jax.llm import answers


def test_normalize_hand_cases():
  assert answers.normalize('  "Ｔhe  Best\tTea!" \nmore') == "the best tea"
  assert answers.normalize("Lay\u2019s Chips...") == "lays chips"
  assert answers.normalize("(Organic) Honey") == "organic) honey"
  assert answers.normalize("") == ""


def test_choose_exact_and_contains():
  cands = ["Green Tea", "Black Tea", "Tea"]
  assert answers.choose(" green tea</s>".replace("</s>", ""), cands) == 0
  assert answers.choose('"Black  TEA".', cands) == 1
  assert answers.choose("Oolong", cands) == -1
  assert answers.choose("", cands) == -1
  # contains: "tea" is inside every output naming a tea -> ambiguous, invalid.
  assert answers.choose("Green Tea", cands, rule="contains") == -1
  assert answers.choose("I pick Green Tea", ["Green Tea", "Coffee"], rule="contains") == 0
  # Two candidates with the same normalised title: ambiguous, invalid.
  assert answers.choose("tea", ["Tea", "TEA!"]) == -1


def test_generation_metrics_hand_values():
  choices = np.array([0, 2, -1, 1, -1])
  target = np.array([0, 1, 0, 1, 3])
  m = answers.generation_metrics(choices, target)
  assert m["valid_ratio"] == 3 / 5
  assert m["hit@1"] == 2 / 5
  assert m["hit@1_valid"] == 2 / 3
  assert answers.generation_metrics(np.array([-1]), np.array([0]))["hit@1_valid"] == 0.0
