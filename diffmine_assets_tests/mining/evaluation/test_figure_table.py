"""The report's figures read like a paper's figure page: each figure beside
the level it must beat, its interval, its goal and whether it was met, in the
order a reader asks; no JSON in a cell (issue 27: the figures were an
alphabetical two-column dump of JSON)."""

import re

from diffmine_assets.mining.evaluation.figure_table import QUESTIONS, figure_table, quality_rows
from diffmine_assets.mining.evaluation.goals import GOALS, judge
from diffmine_assets.mining.report.page import QUALITY_HEADER, FigureTable, render_report

# the shape `evaluate` gives (figures of the demo's checkpoint, trimmed)
FIGURES = {
    "dataset": "builtin", "checkpoint_id": "3d39fcb00131", "labels": 2, "images": 64,
    "accuracy_val": 0.9677, "accuracy_val_images": 31, "accuracy_val_by_label": {"amber": 0.9167, "cobalt": 1.0},
    "top1_hit_rate": 0.9707, "top1_images": 239, "pixel_auc_pr": 0.6585, "cluster_purity": 0.3641, "pixel_auc_pr_over_shuffled": 3.039,
    "localisation_ap": 0.6585, "localisation_ap_by_label": {"amber": 0.659, "cobalt": 0.693},
    "top_clusters_by_label": {"amber": {"top_clusters": ["striped_square", "red_disk"]}, "cobalt": {"top_clusters": ["blue_triangle"]}},
    "translation_target_win": 0.9792, "layout_ssim": 0.3084,
    "chance": {"accuracy_val": 0.25, "top1_hit_rate": 0.1399, "pixel_auc_pr": 0.1052, "translation_target_win": 0.0, "layout_ssim": 0.0291},
    "control": {"kind": "shuffled", "accuracy_val": 0.2903, "top1_hit_rate": 0.2636, "pixel_auc_pr": 0.2167, "localisation_ap_by_label": {"amber": 0.19, "cobalt": 0.27}},
    "translation_control": {"kind": "plain regeneration", "translation_target_win": 1.0, "layout_ssim": 0.2606},
    "gaps": {"accuracy_val_minus_shuffled": {"difference": 0.6774, "low": 0.4831, "high": 0.8387, "images": 31},
             "top1_hit_rate_minus_shuffled": {"difference": 0.7071, "low": 0.6485, "high": 0.7657, "images": 239},
             "layout_ssim_minus_regeneration": {"difference": 0.0478, "low": 0.0235, "high": 0.0713, "images": 32}},
}
FIGURES["goals_met"] = judge(FIGURES, "planted")


def test_rows_follow_the_readers_questions_with_levels_intervals_and_goals():
    rows = quality_rows(FIGURES, GOALS["planted"])
    sections = list(dict.fromkeys(r["section"] for r in rows))
    assert sections == [q for q, _ in QUESTIONS]
    by = {r["figure"]: r for r in rows}
    acc = by["accuracy_val"]
    assert (acc["model"], acc["must_beat"], acc["against"], acc["interval"], acc["cleared"], acc["goal"], acc["met"]) == \
        ("0.968", "0.290", "shuffled control", "[+0.483, +0.839]", "yes", "≥ 0.95", "met")
    assert (by["cluster_purity"]["goal"], by["cluster_purity"]["met"], by["cluster_purity"]["against"]) == ("≥ 0.9", "NOT MET", "nothing to compare with")
    assert (by["pixel_auc_pr_over_shuffled"]["goal"], by["pixel_auc_pr_over_shuffled"]["met"]) == ("≥ 3", "met")
    gap = by["layout_ssim_minus_regeneration"]
    assert (gap["model"], gap["interval"], gap["goal"], gap["met"]) == ("+0.048", "[+0.024, +0.071]", "interval above 0", "met")
    assert by["translation_target_win"]["against"] == "untranslated source"


def test_the_page_shows_the_table_marks_what_is_missed_and_holds_no_json():
    params = {"dataset": "builtin", "checkpoint": {"checkpoint_id": "3d39fcb00131", "steps": 528, "params": {"backend": "tiny", "seed": 0}},
              "typicality": {"n_samples": 32, "t_min": 0.1}}
    page = render_report("builtin", [], FIGURES, params, table=FigureTable(**figure_table(FIGURES, GOALS["planted"])))
    table = page[page.index('<table class="quality">'):]
    table = table[: table.index("</table>")]
    assert all(f"<th>{h}</th>" in table for h in QUALITY_HEADER)
    assert '<td class="miss">NOT MET</td>' in table and "Goals not met: cluster_purity" in page
    assert not re.search(r"<td>[{\[]\"", page)  # no JSON object or list in any cell
    assert "<td>typicality.n_samples</td><td>32</td>" in page and "<td>checkpoint.params.backend</td><td>tiny</td>" in page
    assert "checkpoint <b>3d39fcb00131</b>, 528 training steps" in page
    # per label: accuracy, the model's and the control's localisation, what its top clusters hold
    assert "<td>amber</td><td>0.917</td><td>0.659</td><td>0.190</td><td>striped_square, red_disk</td>" in page


def test_without_a_control_the_page_says_how_to_get_one():
    uncontrolled = {k: v for k, v in FIGURES.items() if k != "control"}
    page = render_report("builtin", [], uncontrolled, {}, table=FigureTable(**figure_table(uncontrolled, GOALS["planted"])))
    assert "diffmine eval --dataset builtin</code> trains the shuffled-label control" in page
