"""score_labels: the one typicality sequence (noise set, model space, maps,
label matrix) that every caller uses, on real files and a tiny real model."""

import json
import numpy as np
import polars as pl
import pytest
import torch

from diffmine_assets.mining.config import TypicalityOptions
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.tensors import model_space
from diffmine_assets.mining.typicality.estimator import matrix_noise_set, typicality_maps
from diffmine_assets.mining.typicality.label_matrix import label_scores
from diffmine_assets.mining.typicality.score import pilot_noise, score_labels
from diffmine_assets_tests.conftest import write_image

# the label matrix on the maps' draws (matrix_t_min null); its own range: the last test
OPTS = TypicalityOptions(n_samples=8, groups=2, batch_size=16, precision="float32", matrix_samples=4, matrix_finalists=2, matrix_t_min=None, matrix_t_max=None)


@pytest.fixture(scope="module")
def model():
    m = TinyDenoiser(["a", "b", "c"], 16, seed=1)
    with torch.no_grad():  # an untrained UNet's label embeddings barely move its output; make them matter
        m.unet.class_embedding.weight.mul_(5)
    return m


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rows = []
    # labels interleaved, so grouping by label is not the input order
    for i, (key, split) in enumerate([("b", "train"), ("a", "val"), ("b", "val"), ("c", "train"), ("a", "train"), ("b", "val"), ("c", "val")]):
        path = write_image(root / f"{i}.png", size=(20, 16), seed=i)
        rows.append({"dataset": "d", "label": key.upper(), "label_key": key, "image_id": f"id{i}", "path": str(path), "width": 20, "height": 16,
                     "split": split})
    return pl.DataFrame(rows)


def test_groups_are_the_labels_in_order_each_as_the_engine_scores_it_alone(model, images):
    groups = score_labels(model, images, OPTS, pilot=images)
    assert [g.labels for g in groups] == [("a",), ("b",), ("c",)]
    assert sorted(np.concatenate([g.index for g in groups]).tolist()) == list(range(len(images)))
    noise = pilot_noise(model, images, OPTS)
    for g in groups:
        rows = images.filter(pl.col("label_key") == g.key)
        assert g.rows["image_id"].to_list() == rows["image_id"].to_list()  # the input order within a label
        alone = typicality_maps(model, model_space(model, rows["path"].to_list()), [g.key], OPTS, noise=noise)
        torch.testing.assert_close(g.result.replicate_maps, alone.replicate_maps)
        table = g.table("ck")
        assert table["map_index"].to_list() == list(range(len(rows))) and set(table["checkpoint_id"]) == {"ck"}
        assert np.allclose(table["typicality"].to_numpy(), g.maps.mean(axis=(1, 2)), atol=1e-6)
    assert all(g.matrix is None and g.matrix_table("ck") is None for g in groups)  # no matrix unless asked


def test_the_matrix_covers_the_images_asked_for_and_reuses_the_maps_pass(model, images):
    held = score_labels(model, images, OPTS, pilot=images, matrix="held-out")
    for g in held:
        want = (g.rows["split"] == "val").to_numpy().nonzero()[0]
        assert g.covered.tolist() == want.tolist()
        table = g.matrix_table("ck")
        assert table["image_id"].unique(maintain_order=True).to_list() == g.rows[want.tolist()]["image_id"].to_list()
        x0 = model_space(model, g.rows["path"].to_list())
        direct = label_scores(model, x0[want], g.result.take(want), g.key, list(model.labels), OPTS)
        torch.testing.assert_close(g.matrix.scores, direct.scores)
    every = score_labels(model, images, OPTS, pilot=images, matrix="all")
    assert sum(len(g.covered) for g in every) == len(images)
    one_label = TinyDenoiser(["a"], 16, seed=1)
    assert score_labels(one_label, images.filter(pl.col("label_key") == "a"), OPTS, matrix="all")[0].matrix is None  # nothing to compare with


def test_tensors_are_scored_under_the_labels_given_and_the_noise_is_the_datasets(model, images):
    x0 = model_space(model, images["path"].to_list())
    under = [("b", "a"), ("c", "a"), ("b", "a"), ("a", "c")]
    groups = score_labels(model, x0[:4], OPTS, under=under, pilot=images)
    assert [g.labels for g in groups] == [("a", "c"), ("b", "a"), ("c", "a")]
    assert [g.index.tolist() for g in groups] == [[3], [0, 2], [1]]
    noise = pilot_noise(model, images, OPTS)
    alone = typicality_maps(model, x0[[0, 2]], ["b", "a"], OPTS, noise=noise)
    torch.testing.assert_close(groups[1].result.maps, alone.maps)
    # the dataset's noise set differs from the one the estimator would draw from the images alone
    own = score_labels(model, x0[:4], OPTS, under=under)
    assert not torch.allclose(own[1].result.maps, groups[1].result.maps)
    with pytest.raises(ValueError, match="need `under`"):
        score_labels(model, x0, OPTS)
    with pytest.raises(ValueError, match="names labels for 2 images; there are 4"):
        score_labels(model, x0[:4], OPTS, under=["a", "b"])


def test_the_label_matrix_error_reads_replicates_from_the_noise_set_not_from_sample_order():
    """Issue 25: under sampling iid, replicate g holds samples g, g + G, ...;
    a non-finalist entry got the first 8 of 16 samples, two in each of 4
    replicates. Its error is the spread of those 4 replicate means (the old
    code took replicates 0 and 1 as whole, and divided their partial sums by 4)."""
    import numpy as np
    import torch

    from diffmine_assets.mining.typicality.label_matrix import replicate_stderr

    rng = np.random.default_rng(0)
    N, G = 16, 4
    diff = torch.from_numpy(rng.normal(size=(1, N, 1)))
    have = torch.zeros((1, N, 1), dtype=torch.bool)
    have[:, :8] = True
    iid = torch.arange(N) % G
    got = float(replicate_stderr(diff, have, iid, G)[0, 0])
    d = diff[0, :8, 0].numpy()
    means = np.array([d[g::G].mean() for g in range(G)])
    assert got == pytest.approx(means.std(ddof=1) / np.sqrt(G))
    # contiguous replicates (the stratified samplers): the first 8 samples are replicates 0 and 1, whole
    contiguous = torch.arange(N) // (N // G)
    got = float(replicate_stderr(diff, have, contiguous, G)[0, 0])
    means = np.array([d[:4].mean(), d[4:8].mean()])
    assert got == pytest.approx(means.std(ddof=1) / np.sqrt(2))


def test_a_matrix_with_its_own_timestep_range_scores_every_label_on_its_own_draws(model, images):
    opts = TypicalityOptions(**{**OPTS.model_dump(), "matrix_t_min": 0.05, "matrix_t_max": 0.3})
    assert opts.matrix_range == (0.05, 0.3) and OPTS.matrix_range is None
    assert TypicalityOptions(**{**OPTS.model_dump(), "matrix_t_min": 0.1, "matrix_t_max": 0.5}).matrix_range is None  # the maps' own range: their draws
    noise = matrix_noise_set(model, (3, 16, 16), opts)
    T = model.num_train_timesteps
    assert 0.05 * T <= int(noise.t.min()) and int(noise.t.max()) < 0.3 * T and bool((noise.weight == 1).all())
    torch.testing.assert_close(noise.eps[:2], -noise.eps[2:4])  # antithetic within a replicate, as the maps' sampling is
    shared = score_labels(model, images, OPTS, pilot=images, matrix="held-out")
    own = score_labels(model, images, opts, pilot=images, matrix="held-out")
    for s, o in zip(shared, own):
        torch.testing.assert_close(o.result.replicate_maps, s.result.replicate_maps)  # the maps keep their range
        x0 = model_space(model, o.rows["path"].to_list())[o.covered]
        direct = label_scores(model, x0, typicality_maps(model, x0, [o.key], opts, noise=noise), o.key, list(model.labels), opts)
        torch.testing.assert_close(o.matrix.scores, direct.scores)
        # its own-label and null passes are the matrix's cost: 8 samples x 2 conditions per covered image
        assert o.matrix.forward_rows == direct.forward_rows + len(o.covered) * 8 * 2
        assert not torch.allclose(o.matrix.scores, s.matrix.scores)
        # the rows say which timesteps scored them, and with what options: the two matrices differ in nothing else
        for group, (lo, hi) in ((o, (0.05, 0.3)), (s, (OPTS.t_min, OPTS.t_max))):
            table = group.matrix_table("ck")
            assert table.select("t_min", "t_max", "seed").unique().rows() == [(lo, hi, OPTS.seed)]
            assert json.loads(table["params"][0])["matrix_t_min"] == group.opts.matrix_t_min
    with pytest.raises(ValueError, match="set together"):
        TypicalityOptions(matrix_t_min=0.05, matrix_t_max=None)
    with pytest.raises(ValueError, match="matrix_t_max"):
        TypicalityOptions(matrix_t_min=0.3, matrix_t_max=0.05)
