"""`tiny`: a small class-conditional UNet (diffusers UNet2DModel) in pixel space.

Condition 0 is the null condition; label i (in `labels` order) is condition
i + 1, so labels added later append embeddings and old ones keep theirs.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

from .base import CONFIG_FILE, Denoiser

WEIGHTS_FILE = "model.safetensors"


def default_architecture(resolution: int) -> dict:
    # Measured on 2 CPU cores (see docs/PERFORMANCE.md): about 1.1 M
    # parameters, attention only at the lowest resolution.
    return {
        "sample_size": resolution,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "norm_num_groups": 8,
    }


class TinyDenoiser(Denoiser):
    backend = "tiny"

    def __init__(self, labels: list[str], resolution: int, architecture: dict | None = None, num_train_timesteps: int = 1000, seed: int = 0):
        self.labels = list(labels)
        self._resolution = resolution
        self.architecture = dict(architecture or default_architecture(resolution))
        self.architecture["sample_size"] = resolution
        self.num_train_timesteps = num_train_timesteps
        torch.manual_seed(seed)
        self.unet = UNet2DModel(**self.architecture, num_class_embeds=len(self.labels) + 1)
        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps)
        self._alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float32)
        self._index = {k: i + 1 for i, k in enumerate(self.labels)}

    # conditions
    def condition_ids(self, label_keys):
        return torch.tensor([0 if k is None else self._index[k] for k in label_keys], dtype=torch.long)

    def add_labels(self, new_labels: list[str]) -> list[str]:
        """Grow the class embedding for labels the model has not seen; the
        rows of the null condition and of known labels are kept as they are."""
        added = [k for k in new_labels if k not in self._index]
        if not added:
            return []
        old = self.unet.class_embedding
        grown = torch.nn.Embedding(old.num_embeddings + len(added), old.embedding_dim)
        with torch.no_grad():
            grown.weight[: old.num_embeddings] = old.weight
            # New labels start from the null condition: "knowing the label"
            # begins as knowing nothing.
            grown.weight[old.num_embeddings :] = old.weight[0]
        self.unet.class_embedding = grown
        self.labels += added
        self._index = {k: i + 1 for i, k in enumerate(self.labels)}
        return added

    # model space
    @property
    def resolution(self) -> int:
        return self._resolution

    def encode(self, pixels):
        return pixels

    def add_noise(self, x0, eps, t):
        ab = self._alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def predict(self, xt, t, cond):
        return self.unet(xt.contiguous(memory_format=torch.channels_last), t, class_labels=cond).sample

    def features(self, xt, t, cond, block):
        blocks = self.unet.up_blocks
        if not 0 <= block < len(blocks):
            raise ValueError(f"feature block {block} out of range: the network has {len(blocks)} up-sampling blocks")
        captured = {}

        def hook(_module, _inputs, output):
            captured["out"] = output[0] if isinstance(output, tuple) else output

        handle = blocks[block].register_forward_hook(hook)
        try:
            self.predict(xt, t, cond)
        finally:
            handle.remove()
        return captured["out"].float().contiguous()

    def for_inference(self) -> "TinyDenoiser":
        # channels_last lets oneDNN pick its fast convolution kernels: about
        # 1.6x the forward passes per second on 2 CPU cores (PERFORMANCE.md).
        self.unet.eval()
        self.unet.to(memory_format=torch.channels_last)
        return self

    @property
    def module(self):
        return self.unet

    # persistence
    def config(self) -> dict:
        return {
            "backend": self.backend,
            "labels": self.labels,
            "resolution": self._resolution,
            "architecture": self.architecture,
            "num_train_timesteps": self.num_train_timesteps,
            "scheduler": dict(self.scheduler.config),
            "parameters": sum(p.numel() for p in self.unet.parameters()),
        }

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.unet.state_dict().items()}, directory / WEIGHTS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> "TinyDenoiser":
        directory = Path(directory)
        cfg = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(cfg["labels"], cfg["resolution"], cfg["architecture"], cfg["num_train_timesteps"])
        model.unet.load_state_dict(load_file(directory / WEIGHTS_FILE))
        return model
