"""The registry: every backend by name, optional ones imported on demand."""

import json

import pytest
import torch

from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.mining.denoisers import registry
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser


def test_a_backend_whose_extra_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "future", ("no_such_module_here", "Future", "future-extra"))
    with pytest.raises(ImportError, match=r"the future backend needs the \[future-extra\] extra: pip install 'diffmine\[future-extra\]'"):
        registry.backend("future")


def test_new_load_and_untrained_go_through_the_backend_that_saved(tmp_path):
    opts = TrainingOptions(channels=(16, 16), patch=1, seed=3)
    model = registry.new_denoiser(opts, ["a", "b"], 16)
    assert isinstance(model, TinyDenoiser) and model.labels == ["a", "b"]
    with torch.no_grad():
        model.unet.class_embedding.weight.add_(1.0)  # "trained"
    model.save(tmp_path / "m")
    again = registry.load_denoiser(tmp_path / "m")
    x, t, c = torch.randn(2, 3, 16, 16), torch.tensor([10, 500]), model.condition_ids(["a", None])
    with torch.no_grad():
        torch.testing.assert_close(again.predict(x, t, c), model.predict(x, t, c))
        # the control: the checkpoint's architecture and labels, as the options would initialise it, never trained
        control = registry.untrained_like(tmp_path / "m", opts)
        torch.testing.assert_close(control.predict(x, t, c), registry.new_denoiser(opts, ["a", "b"], 16).predict(x, t, c))
        assert not torch.allclose(control.predict(x, t, c), model.predict(x, t, c))
    cfg = json.loads((tmp_path / "m" / "denoiser.json").read_text())
    (tmp_path / "m" / "denoiser.json").write_text(json.dumps({**cfg, "backend": "mystery"}))
    with pytest.raises(ValueError, match="unknown denoiser backend 'mystery'"):
        registry.load_denoiser(tmp_path / "m")
