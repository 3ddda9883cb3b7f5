"""The tiny denoiser's conditioning and cell options: each trains, saves and
reloads to the same predictions, and its label changes what it predicts."""

import pytest
import torch

from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.mining.denoisers.registry import load_denoiser
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.training.diagnostics import held_out_loss
from diffmine_assets.mining.training.loop import train

LABELS = ["a", "b"]


@pytest.mark.parametrize("conditioning,patch", [("class", 1), ("class", 2), ("film", 2), ("cross-attention", 1), ("cross-attention", 2)])
def test_every_variant_trains_reloads_and_uses_its_label(tmp_path, conditioning, patch):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8)
    keys = [LABELS[i % 2] for i in range(8)]
    m = TinyDenoiser(LABELS, 16, conditioning=conditioning, channels=(16, 32), patch=patch, seed=3)
    opts = TrainingOptions(steps=4, batch_size=4, conditioning=conditioning, channels=(16, 32), patch=patch, ema_decay=0.0,
                           warmup_steps=0, save_every=100, log_every=100)
    r = train(m, pixels, keys, [f"{i}.png" for i in range(8)], opts, tmp_path / "state", meta={})
    assert r.steps == 4
    m.save(tmp_path / "model")
    again = load_denoiser(tmp_path / "model")
    assert (again.conditioning, again.patch) == (conditioning, patch)
    xt = torch.randn(2, 3, 16, 16, generator=g)
    t = torch.tensor([300, 300])
    m.module.eval(), again.module.eval()
    with torch.no_grad():
        out = m.predict(xt, t, m.condition_ids(["a", "a"]))
        torch.testing.assert_close(again.predict(xt, t, again.condition_ids(["a", "a"])), out)
        other = m.predict(xt, t, m.condition_ids(["b", "b"]))
    assert out.shape == xt.shape  # cells are put back in place: one prediction per pixel
    assert (out - other).abs().max() > 1e-6


@pytest.mark.parametrize("conditioning", ["class", "film", "cross-attention"])
def test_dropout_acts_while_training_is_kept_on_reload_and_is_off_when_scoring(tmp_path, conditioning):
    g = torch.Generator().manual_seed(0)
    opts = TrainingOptions(conditioning=conditioning, channels=(16, 32), patch=2, dropout=0.5)
    m = TinyDenoiser.from_options(opts, LABELS, 16, {k: k for k in LABELS}, seed=3)
    drops = [d.p for d in m.module.modules() if isinstance(d, torch.nn.Dropout) and d.p > 0]
    assert drops and set(drops) == {0.5}
    xt, t, cond = torch.randn(2, 3, 16, 16, generator=g), torch.tensor([300, 300]), m.condition_ids(["a", "b"])
    m.save(tmp_path / "model")
    again = load_denoiser(tmp_path / "model")
    assert {d.p for d in again.module.modules() if isinstance(d, torch.nn.Dropout) and d.p > 0} == {0.5}
    with torch.no_grad():
        m.module.train()
        assert (m.predict(xt, t, cond) - m.predict(xt, t, cond)).abs().max() > 1e-6  # two draws of the dropout masks
        m.module.eval(), again.module.eval()
        torch.testing.assert_close(m.predict(xt, t, cond), m.predict(xt, t, cond))
        torch.testing.assert_close(again.predict(xt, t, cond), m.predict(xt, t, cond))
    # the held-out loss logged along training reads the network as it is scored, and leaves it training
    m.module.train()
    x0 = torch.randn(4, 3, 16, 16, generator=g)
    c4 = m.condition_ids(["a", "b", "a", "b"])
    assert held_out_loss(m, x0, c4, seed=1) == held_out_loss(m, x0, c4, seed=1)
    assert m.module.training


def test_a_resolution_that_is_not_a_multiple_of_the_cell_is_refused():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        TinyDenoiser(LABELS, 15, patch=2)


@pytest.mark.parametrize("conditioning", ["class", "cross-attention"])
def test_checkpoints_are_in_the_diffusers_layout_and_old_ones_still_load(tmp_path, conditioning):
    import json

    from diffusers import DDPMScheduler, UNet2DConditionModel, UNet2DModel
    from safetensors.torch import save_file

    m = TinyDenoiser(["a", "b"], 16, conditioning=conditioning, channels=(16, 16), seed=3)
    m.add_labels(["c"])  # a grown condition table must be rebuilt at its new size
    m.save(tmp_path / "new")
    xt, t = torch.randn(3, 3, 16, 16), torch.tensor([10, 500, 900])
    cond = m.condition_ids(["a", None, "c"])
    with torch.no_grad():
        want = m.predict(xt, t, cond)
        # diffusers' own tooling loads what diffmine trained
        if conditioning == "class":
            unet = UNet2DModel.from_pretrained(tmp_path / "new" / "unet")
            assert torch.allclose(unet(xt, t, class_labels=cond).sample, want, atol=1e-5)
        else:
            unet = UNet2DConditionModel.from_pretrained(tmp_path / "new" / "unet")
            assert torch.allclose(unet(xt, t, encoder_hidden_states=m.net.tokens(cond)).sample, want, atol=1e-5)
        assert DDPMScheduler.from_pretrained(tmp_path / "new" / "scheduler").config.num_train_timesteps == 1000
        assert torch.allclose(load_denoiser(tmp_path / "new").predict(xt, t, cond), want, atol=1e-5)
        # the layout before: one safetensors file of the whole network beside denoiser.json
        old = tmp_path / "old"
        old.mkdir()
        save_file({k: v.contiguous() for k, v in m.net.state_dict().items()}, old / "model.safetensors")
        cfg = m.config()
        cfg.pop("layout")
        (old / "denoiser.json").write_text(json.dumps(cfg))
        assert torch.allclose(load_denoiser(old).predict(xt, t, cond), want, atol=1e-5)
