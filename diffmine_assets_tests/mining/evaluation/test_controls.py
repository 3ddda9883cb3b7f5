"""Controls: the shuffled-label control keeps every label's size and split."""

import polars as pl

from diffmine_assets.mining.evaluation.controls import shuffled_labels


def table(n=40):
    return pl.DataFrame({
        "image_id": [f"{i:04d}" for i in range(n)],
        "relpath": [f"f{i}.png" for i in range(n)],
        "label": [f"L{i % 4}" for i in range(n)],
        "label_key": [f"l{i % 4}" for i in range(n)],
        "split": ["val" if i % 5 == 0 else "train" for i in range(n)],
    })


def test_shuffle_keeps_counts_per_split_and_moves_labels():
    images = table()
    out = shuffled_labels(images, seed=0)
    assert sorted(out["image_id"].to_list()) == sorted(images["image_id"].to_list())
    for split in ("train", "val"):
        a = images.filter(pl.col("split") == split)["label_key"].value_counts().sort("label_key")
        b = out.filter(pl.col("split") == split)["label_key"].value_counts().sort("label_key")
        assert a.equals(b)
    joined = images.join(out, on="image_id", suffix="_shuffled")
    moved = (joined["label_key"] != joined["label_key_shuffled"]).mean()
    assert moved > 0.5  # most images changed label (a random permutation of 4 labels moves ~3/4)
    assert (joined["label"].str.to_lowercase() == joined["label_key"]).all()
    assert (joined["label_shuffled"].str.to_lowercase() == joined["label_key_shuffled"]).all()  # label text follows its key
    assert shuffled_labels(images, seed=0).equals(out) and not shuffled_labels(images, seed=1).equals(out)


def test_the_control_trains_the_steps_the_checkpoint_trained():
    """Issue 25: the control was trained from the config's options, so a
    model cut by a time budget, or continued with extra steps, was compared
    with a control of another budget."""
    from diffmine_assets.mining.config import TrainingOptions
    from diffmine_assets.mining.evaluation.controls import control_recipe

    budgeted = TrainingOptions(epochs=60, time_budget="10m")
    recipe, stop_after = control_recipe(budgeted, {"steps": 137, "planned_steps": 137, "unbudgeted_steps": 216, "continued_from": None})
    assert recipe.steps == 137 and recipe.time_budget is None and stop_after is None
    # a continued checkpoint: its recorded steps are the whole run's (first training and continuation)
    assert control_recipe(TrainingOptions(steps=500, continue_steps=250), {"steps": 750, "continued_from": "abc"})[0].steps == 750
    # everything else is the model's
    assert recipe.model_copy(update={"steps": None, "time_budget": budgeted.time_budget}) == budgeted
    # issue 28: the evidence published the weights of step 300 of a 900-step ceiling: the
    # control follows the same schedule and stops there (never by evidence of its own)
    recipe, stop_after = control_recipe(TrainingOptions(), {"steps": 300, "planned_steps": 900, "unbudgeted_steps": 0, "continued_from": None})
    assert (recipe.steps, recipe.time_budget, stop_after, recipe.by_evidence) == (900, None, 300, False)
    # shift: auto is the model's resolved shift, not a decision of the control's own (which a continuation or
    # a budget never applied could make otherwise); a shift the options give stays
    row = {"steps": 750, "continued_from": "abc", "shift_used": 0.0}
    assert control_recipe(TrainingOptions(steps=500, continue_steps=250), row)[0].shift == 0.0
    assert control_recipe(TrainingOptions(steps=500, continue_steps=250), {**row, "shift_used": 0.1})[0].shift == 0.1
    assert control_recipe(TrainingOptions(steps=500, shift=0.05), {**row, "shift_used": 0.1})[0].shift == 0.05
    assert control_recipe(TrainingOptions(steps=500), {"steps": 500, "continued_from": None})[0].shift == "auto"  # recorded before the column
