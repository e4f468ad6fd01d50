"""The report opens with a Hit@1 chart (paper bars for paper pairs) and writes results.csv."""

import csv

from sfubm_jax import report_figures

RES = {
    "sasrec": {"food": {"hit@1": 0.1, "ndcg@10": 0.3}, "kitchen": {"hit@1": 0.05}},
    "sfubm": {"food": {"hit@1": 0.2, "valid_ratio": 0.5}},
    "llm_text_only": {"food": {"hit@1": 0.15}},
    "federate": {"food": {"sim": 0.3, "reid@1": 0.0}},
}


def test_chart_rows_pair_ours_with_the_papers_column():
  rows = report_figures.chart_rows(RES, "food_kitchen", "food")
  assert rows == [("sasrec", 0.1, 0.2685), ("sfubm", 0.2, 0.3662), ("llm_text_only", 0.15, None)]
  assert all(p is None for _, _, p in report_figures.chart_rows(RES, "arts_office", "food"))


def test_chart_is_a_png(tmp_path):
  path = tmp_path / "hit1.png"
  assert report_figures.hit1_chart(RES, "food_kitchen", "food", path)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not report_figures.hit1_chart(RES, "food_kitchen", "nowhere", tmp_path / "x.png")


def test_results_csv_has_one_row_per_method_domain_metric(tmp_path):
  path = tmp_path / "results.csv"
  report_figures.write_results_csv(RES, path)
  rows = list(csv.DictReader(path.open()))
  assert len(rows) == sum(len(m) for d in RES.values() for m in d.values())
  back = {}
  for r in rows:
    back.setdefault(r["method"], {}).setdefault(r["domain"], {})[r["metric"]] = float(r["value"])
  assert back == RES
