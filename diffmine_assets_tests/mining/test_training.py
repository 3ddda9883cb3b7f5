"""Training: resume equals an uninterrupted run, divergence names the image."""

import pytest
import torch

from diffmine_assets.mining.datasets.spec import TrainingOptions
from diffmine_assets.mining.denoisers import TinyDenoiser, load_denoiser
from diffmine_assets.mining.training import TrainingDiverged, load_state, train

LABELS = ["a", "b"]


def data(n=6):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    keys = [LABELS[i % 2] for i in range(n)]
    names = [f"img{i}.png" for i in range(n)]
    return pixels, keys, names


OPTS = TrainingOptions(steps=6, batch_size=4, save_every=2, log_every=1, seed=5)


def weights(model):
    return {k: v.clone() for k, v in model.unet.state_dict().items()}


def test_resumed_training_equals_uninterrupted(tmp_path):
    pixels, keys, names = data()
    straight = TinyDenoiser(LABELS, 16, seed=1)
    r1 = train(straight, pixels, keys, names, OPTS, tmp_path / "a", meta={"m": 1})
    assert r1.resumed_from == 0 and r1.steps == 6 and len(r1.log) == 6

    resumed = TinyDenoiser(LABELS, 16, seed=1)
    part = train(resumed, pixels, keys, names, OPTS, tmp_path / "b", meta={"m": 1}, stop_after=3)
    assert part.steps == 3
    assert load_state(tmp_path / "b")[1]["step"] == 3  # saved at the interruption point too
    fresh = TinyDenoiser(LABELS, 16, seed=99)  # a new process: different init, state comes from disk
    r2 = train(fresh, pixels, keys, names, OPTS, tmp_path / "b", meta={"m": 1})
    assert r2.resumed_from == 3
    for k, v in weights(straight).items():
        torch.testing.assert_close(weights(fresh)[k], v, atol=1e-5, rtol=1e-4)
    assert [round(r["loss"], 5) for r in r2.log] == [round(r["loss"], 5) for r in r1.log]


def test_changed_data_or_options_start_afresh(tmp_path):
    pixels, keys, names = data()
    train(TinyDenoiser(LABELS, 16), pixels, keys, names, OPTS, tmp_path, meta={"data": "v1"}, stop_after=2)
    r = train(TinyDenoiser(LABELS, 16), pixels, keys, names, OPTS, tmp_path, meta={"data": "v2"})
    assert r.resumed_from == 0


def test_saved_state_is_safetensors_and_reloads(tmp_path):
    pixels, keys, names = data()
    m = TinyDenoiser(LABELS, 16)
    train(m, pixels, keys, names, OPTS, tmp_path, meta={})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["denoiser.json", "model.safetensors", "optimizer.safetensors", "train_state.json"]
    again = load_denoiser(tmp_path)
    assert again.labels == LABELS
    for k, v in weights(m).items():
        torch.testing.assert_close(weights(again)[k], v)


def test_non_finite_loss_names_the_image(tmp_path):
    pixels, keys, names = data()
    m = TinyDenoiser(LABELS, 16)
    with torch.no_grad():
        m.unet.class_embedding.weight[2] = float("nan")  # label "b" only
    opts = OPTS.model_copy(update={"label_dropout": 0.0})
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step 1 on image img[135]\.png"):
        train(m, pixels, keys, names, opts, tmp_path, meta={})


def test_a_label_with_one_image_trains(tmp_path):
    pixels, _, _ = data(3)
    r = train(TinyDenoiser(["x", "y"], 16), pixels, ["x", "x", "y"], ["p", "q", "r"], OPTS, tmp_path, meta={})
    assert r.steps == 6 and all(row["loss"] == row["loss"] for row in r.log)


def test_added_labels_keep_old_embeddings():
    m = TinyDenoiser(LABELS, 16)
    before = m.unet.class_embedding.weight.detach().clone()
    assert m.add_labels(["b", "c"]) == ["c"]
    after = m.unet.class_embedding.weight.detach()
    torch.testing.assert_close(after[:3], before)
    torch.testing.assert_close(after[3], before[0])
    assert m.condition_ids(["c", None, "a"]).tolist() == [3, 0, 1]
