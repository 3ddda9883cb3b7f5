"""The estimator: shared noise, batching equivalence, sampling, errors."""

import pytest
import torch

from diffmine_assets.mining.config import TypicalityOptions
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.denoisers.base import UnknownLabelError
import numpy as np

from diffmine_assets.mining.typicality.estimator import noise_set, timestep_profile, typicality_maps


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = TinyDenoiser(["a", "b", "c"], 16, seed=1)
    # an untrained UNet's label embeddings barely move its output; make them matter
    with torch.no_grad():
        m.unet.class_embedding.weight.mul_(5)
    return m


@pytest.fixture(scope="module")
def images():
    return torch.rand((5, 3, 16, 16), generator=torch.Generator().manual_seed(3)) * 2 - 1


def reference(model, x0, label, noise):
    """The definition, one (image, sample) at a time, label and null apart."""
    out = torch.zeros((x0.shape[0], *x0.shape[-2:]))
    with torch.inference_mode():
        for i in range(x0.shape[0]):
            for s in range(noise.t.shape[0]):
                eps, t = noise.eps[s : s + 1], noise.t[s : s + 1]
                xt = model.add_noise(x0[i : i + 1], eps, t)
                l_c = ((model.predict(xt, t, model.condition_ids([label])) - eps) ** 2).mean(1)[0]
                l_0 = ((model.predict(xt, t, model.condition_ids([None])) - eps) ** 2).mean(1)[0]
                out[i] += (l_0 - l_c) * noise.weight[s]
    return out / noise.t.shape[0]


@pytest.mark.parametrize("batch_size", [2, 7, 64])
@pytest.mark.parametrize("sampling", ["iid", "stratified-antithetic", "importance-antithetic"])
def test_engine_equals_the_definition_on_the_same_noise(model, images, batch_size, sampling):
    opts = TypicalityOptions(n_samples=8, groups=2, sampling=sampling, batch_size=batch_size, precision="float32")
    profile = timestep_profile(model, images, "b", opts, torch.float32) if sampling.startswith("importance") else None
    noise = noise_set(model, (3, 16, 16), opts, profile)
    res = typicality_maps(model, images, ["b"], opts, noise=noise)
    ref = reference(model, images, "b", noise)
    assert res.maps.shape == (5, 1, 16, 16)
    torch.testing.assert_close(res.maps[:, 0], ref, atol=2e-5, rtol=1e-4)
    assert ref.abs().mean() > 1e-4  # the label changes the prediction: the test can fail


def test_importance_weights_keep_the_expectation(model, images):
    opts = TypicalityOptions(n_samples=64, groups=4, sampling="importance-antithetic", precision="float32", t_max=0.7)
    profile = timestep_profile(model, images, "b", opts, torch.float32)
    assert profile.shape == (12,) and profile.sum() == pytest.approx(1.0) and (profile > 0).all()
    n = noise_set(model, (3, 16, 16), opts, profile)
    assert n.t.min() >= 100 and n.t.max() < 700
    # E_q[p/q] = 1: the weights undo the density they were drawn from
    assert float(n.weight.mean()) == pytest.approx(1.0, abs=0.1)
    # with a profile heavy at low t, samples follow it and weights undo it
    q = np.array([0.45] + [0.05] * 11)
    skewed = noise_set(model, (3, 16, 16), opts, q)
    first_bin = skewed.t < 150
    assert first_bin.float().mean().item() == pytest.approx(0.45, abs=0.07)
    assert torch.allclose(skewed.weight[first_bin], torch.tensor((1 / 12) / 0.45))
    assert torch.allclose(skewed.weight[~first_bin], torch.tensor((1 / 12) / 0.05))


def test_bfloat16_agrees_with_float32(model, images):
    base = TypicalityOptions(n_samples=16, groups=2, sampling="iid")
    f32 = typicality_maps(model, images, ["b"], base.model_copy(update={"precision": "float32"}))
    bf16 = typicality_maps(model, images, ["b"], base.model_copy(update={"precision": "bfloat16"}))
    assert bf16.precision == "bfloat16" and f32.precision == "float32"
    corr = np.corrcoef(f32.maps.flatten().numpy(), bf16.maps.flatten().numpy())[0, 1]
    assert corr > 0.95


def test_label_matrix_shares_the_null_and_matches_single_label_runs(model, images):
    opts = TypicalityOptions(n_samples=8, groups=2, batch_size=24, precision="float32", sampling="stratified-antithetic")
    both = typicality_maps(model, images, ["a", "c"], opts)
    only_c = typicality_maps(model, images, ["c"], opts)
    torch.testing.assert_close(both.maps[:, 1], only_c.maps[:, 0], atol=2e-5, rtol=1e-4)
    # one null evaluation per row serves both labels: 3 evaluations per row, not 4
    assert both.forward_rows == 5 * 8 * 3
    assert not torch.allclose(both.maps[:, 0], both.maps[:, 1])


def test_noise_is_shared_and_stratified(model):
    opts = TypicalityOptions(n_samples=16, groups=4, sampling="stratified-antithetic", t_min=0.1, t_max=0.7)
    n = noise_set(model, (3, 16, 16), opts)
    again = noise_set(model, (3, 16, 16), opts)
    assert torch.equal(n.eps, again.eps) and torch.equal(n.t, again.t)  # the seed fixes every image's noise
    assert n.t.min() >= 100 and n.t.max() < 700
    for g in range(4):
        sel = n.group == g
        t_g, e_g = n.t[sel], n.eps[sel]
        assert sel.sum() == 4
        torch.testing.assert_close(e_g[:2], -e_g[2:])  # antithetic pairs
        assert torch.equal(t_g[:2], t_g[2:])
        # one timestep per stratum of [100, 700)
        assert sorted(((t_g[:2] - 100) // 300).tolist()) == [0, 1]
    other = noise_set(model, (3, 16, 16), opts.model_copy(update={"seed": 1}))
    assert not torch.equal(n.eps, other.eps)


def test_standard_error_comes_from_replicates(model, images):
    opts = TypicalityOptions(n_samples=16, groups=4, batch_size=32)
    res = typicality_maps(model, images, ["a"], opts)
    per_rep = res.replicate_maps[:, 0].mean(dim=(-2, -1))  # (B, G)
    torch.testing.assert_close(res.image_stderr[:, 0], per_rep.std(dim=1) / 2)
    torch.testing.assert_close(res.image_scores[:, 0], per_rep.mean(dim=1))
    assert (res.image_stderr > 0).all()


def test_more_samples_shrink_the_error(model, images):
    small = typicality_maps(model, images, ["a"], TypicalityOptions(n_samples=8, groups=4))
    large = typicality_maps(model, images, ["a"], TypicalityOptions(n_samples=128, groups=4))
    assert large.image_stderr.mean() < small.image_stderr.mean()


def test_a_label_the_checkpoint_never_saw_is_a_clear_error(model, images):
    with pytest.raises(UnknownLabelError, match=r"labels \['zz'\] are not in this checkpoint .* re-materialize the checkpoint"):
        typicality_maps(model, images, ["zz"], TypicalityOptions(n_samples=4, groups=2))


def test_options_out_of_range_fail_before_work():
    with pytest.raises(ValueError, match="t_max"):
        TypicalityOptions(t_min=0.7, t_max=0.1)
    with pytest.raises(ValueError, match="multiple of groups"):
        TypicalityOptions(n_samples=10, groups=4)


def test_label_scores_reuse_the_maps_pass_and_match_full_runs(model, images):
    from diffmine_assets.mining.typicality.label_matrix import label_scores

    opts = TypicalityOptions(n_samples=8, groups=4, batch_size=16, precision="float32", sampling="stratified-antithetic", matrix_samples=4, matrix_finalists=2)
    own = typicality_maps(model, images, ["b"], opts)
    scores = label_scores(model, images, own, "b", ["a", "b", "c"], opts)
    full = typicality_maps(model, images, ["a", "b", "c"], opts)
    # the own label and every finalist got all N samples: equal to the full computation
    whole = scores.samples == 8
    assert whole[:, 1].all() and (scores.finalist.sum(1) == 2).all()
    torch.testing.assert_close(scores.scores[whole], full.image_scores[whole], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(scores.stderr[whole], full.image_stderr[whole], atol=2e-5, rtol=1e-4)
    # the others kept their first-stage estimate: the first 4 samples (2 whole replicates)
    first = full.replicate_maps[:, :, :2].mean(dim=(2, 3, 4))
    torch.testing.assert_close(scores.scores[~whole], first[~whole], atol=2e-5, rtol=1e-4)
    assert (scores.samples[~whole] == 4).all() and (~whole).any()
    # only the other labels cost evaluations: 4 samples x 2 labels, then N - 4 for each non-own finalist
    extra_finalists = int((scores.finalist & ~torch.tensor([False, True, False])).sum())
    assert scores.forward_rows == 5 * 4 * 2 + extra_finalists * 4
    # the prediction is the best finalist
    for b in range(5):
        fin = scores.finalist[b].nonzero().flatten().tolist()
        assert int(scores.predicted[b]) == max(fin, key=lambda l: float(scores.scores[b, l]))


def test_pilot_over_several_labels_gives_one_noise_set(model, images):
    opts = TypicalityOptions(n_samples=8, groups=2, precision="float32")
    q = timestep_profile(model, images, ["a", "b", "c", "a"], opts, torch.float32)
    again = timestep_profile(model, images, ["a", "b", "c", "a"], opts, torch.float32)
    assert np.array_equal(q, again) and q.shape == (12,)
    one = timestep_profile(model, images, "a", opts, torch.float32)
    assert not np.array_equal(q, one)
