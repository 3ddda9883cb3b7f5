"""The figures as a reader asks for them (the report's figures table): does
the model know the labels, does it find the elements, are the clusters pure,
do translations work. One row per figure, beside the level it must beat, the
interval of its difference, its goal and whether it was met (the rows of
`verdicts`, which `diffmine eval` prints); then per-label rows. Cells are
text, never JSON. The report renders these rows; it does not compute them."""

from __future__ import annotations

from .goals import CONTROL_RATIO_GOAL, TRANSLATION_GAP_GOALS, TRANSLATION_MARGINS
from .verdicts import verdicts

QUESTIONS = (
    ("Does the model know the labels?", ("accuracy_val",)),
    ("Does it find the elements?", ("top1_hit_rate", "pixel_auc_pr", "localisation_ap", "distractor_share_top50", "top1_hit_rate_correspondence",
                                    "distractor_share_top50_correspondence")),
    ("Are the clusters pure?", ("cluster_purity", "label_elements_found", "distractor_top3_share")),
    ("Do translations work?", ("translation_target_win", "element_swap_rate", "layout_ssim", "background_psnr_db", *TRANSLATION_GAP_GOALS,
                               "translation_target_win_minus_regeneration", "element_swap_rate_minus_regeneration",
                               "translation_target_win_minus_confined_regeneration", "element_swap_rate_minus_confined_regeneration")),
)
MEANING = {
    "accuracy_val": "held-out images most typical under their own label",
    "top1_hit_rate": "images whose most typical window is on their label's element",
    "pixel_auc_pr": "average precision of the map against the element's box, per image",
    "localisation_ap": "the same, averaged per label first",
    "distractor_share_top50": "top-50 patches on a distractor (lower is better)",
    "top1_hit_rate_correspondence": "the correspondence baseline (Doersch et al.)",
    "distractor_share_top50_correspondence": "the baseline's top-50 on a distractor",
    "cluster_purity": "members on their cluster's dominant element",
    "label_elements_found": "label elements dominating a top-3 cluster",
    "distractor_top3_share": "labels with a distractor among their top 3 clusters",
    "translation_target_win": "translations scored most typical of their target",
    "element_swap_rate": "translations whose element became the target's",
    "layout_ssim": "structural similarity of translation and source",
    "background_psnr_db": "background kept (dB)",
    "element_swap_rate_minus_confined_regeneration": "the swap against regeneration drawn inside the same mask, the rest as the translation kept it",
}


def _goal_text(name: str, goals: dict) -> str:
    if name in goals:
        op, bound = goals[name]
        return f"{'≥' if op == '>=' else '≤'} {bound:g}"
    if name in TRANSLATION_GAP_GOALS:
        return "interval above 0"
    if name in TRANSLATION_MARGINS:
        return f"interval ≥ {TRANSLATION_MARGINS[name]:g}"
    return ""


def _number(v, signed: bool = False) -> str:
    if v is None:
        return ""
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def _against(r: dict) -> str:
    if r.get("gap"):  # a paired difference: its level is no difference at all, or a margin
        level = "no difference" if not r.get("level") else f"a difference of {r['level']:g}"
        return level if r["low"] is not None else f"{level} (too few images for an interval)"
    return r["against"] or "nothing to compare with"


def quality_rows(figures: dict, goals: dict) -> list[dict]:
    """The figures table: one row per figure (section, figure, meaning, model,
    must beat, against, interval, cleared, goal, met), in the order of
    QUESTIONS, then any other figure; `goals` are the preset's bounds
    (goals.GOALS[preset]), judged in figures["goals_met"]."""
    met = figures.get("goals_met") or {}
    by_name = {r["figure"]: r for r in verdicts(figures)}
    ratio = f"pixel_auc_pr_{CONTROL_RATIO_GOAL:g}x_shuffled"
    if ratio in met and figures.get("pixel_auc_pr_over_shuffled") is not None:
        by_name["pixel_auc_pr_over_shuffled"] = {"figure": "pixel_auc_pr_over_shuffled", "model": figures["pixel_auc_pr_over_shuffled"], "level": None,
                                                 "against": "ratio to the shuffled control", "low": None, "high": None, "cleared": None}
    placed = {n for _, names in QUESTIONS for n in names} | {"pixel_auc_pr_over_shuffled"}
    sections = [(q, [*names, *(("pixel_auc_pr_over_shuffled",) if q.startswith("Does it find") else ())]) for q, names in QUESTIONS]
    sections.append(("Other figures", [n for n in by_name if n not in placed]))
    rows = []
    for question, names in sections:
        for name in names:
            r = by_name.get(name)
            if r is None:
                continue
            goal_key = ratio if name == "pixel_auc_pr_over_shuffled" else name
            goal = f"≥ {CONTROL_RATIO_GOAL:g}" if goal_key == ratio else _goal_text(name, goals)
            rows.append({
                "section": question, "figure": name, "meaning": MEANING.get(name, "paired difference, per image" if r.get("gap") else ""),
                "model": _number(r["model"], signed=bool(r.get("gap"))), "must_beat": _number(r["level"]), "against": _against(r),
                "interval": f"[{r['low']:+.3f}, {r['high']:+.3f}]" if r["low"] is not None else "",
                "cleared": {True: "yes", False: "no", None: ""}[r["cleared"]],
                "goal": goal, "met": {True: "met", False: "NOT MET", None: ""}[met.get(goal_key)] if goal else "",
            })
    return rows


def per_label_rows(figures: dict) -> tuple[list[str], list[list]]:
    """Per label: held-out accuracy, localisation AP beside the control's,
    and the element under each of its top clusters."""
    acc = figures.get("accuracy_val_by_label") or {}
    loc = figures.get("localisation_ap_by_label") or {}
    ctrl = (figures.get("control") or {}).get("localisation_ap_by_label") or {}
    tops = figures.get("top_clusters_by_label") or {}
    labels = sorted(set(acc) | set(loc) | set(tops))
    header = ["label", "held-out accuracy", "localisation AP", f"{(figures.get('control') or {}).get('kind', 'control')} AP", "top clusters hold"]
    rows = [[k, _number(acc.get(k)), _number(loc.get(k)), _number(ctrl.get(k)), ", ".join((tops.get(k) or {}).get("top_clusters", []))] for k in labels]
    return header, rows


def figure_table(figures: dict, goals: dict) -> dict:
    """What the report's figures table shows: rows, per-label rows, the goals
    not met, whether goals were judged and whether a control was scored."""
    judged = figures.get("goals_met") or {}
    return {"rows": quality_rows(figures, goals), "per_label": per_label_rows(figures), "missed": [k for k, ok in judged.items() if not ok],
            "judged": bool(judged), "controlled": bool(figures.get("control"))}
