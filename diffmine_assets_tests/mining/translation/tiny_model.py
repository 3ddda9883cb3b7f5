"""The tiny model the translation tests share: trained for a few seconds
(150 steps) on their scenes, in float32 with uniform timesteps."""

import torch

from diffmine_assets.mining.config import TrainingOptions
from diffmine_assets.mining.denoisers.tiny import TinyDenoiser
from diffmine_assets.mining.training.loop import train


def trained_on(x: torch.Tensor, keys: list[str], labels: list[str], state_dir) -> TinyDenoiser:
    """A 16-px TinyDenoiser over `labels`, trained on scenes `x` ([-1, 1])
    labelled `keys`, ready for inference."""
    pixels = ((x + 1) * 127.5).round().to(torch.uint8)
    model = TinyDenoiser(labels, x.shape[-1], seed=0, channels=(16, 32, 32))
    opts = TrainingOptions(steps=150, batch_size=16, learning_rate=2e-3, seed=0, save_every=1000, log_every=1000, precision="float32",
                           timesteps="uniform", loss_weighting="none")
    train(model, pixels, keys, [f"s{i}" for i in range(len(keys))], opts, state_dir, meta={})
    return model.for_inference()
