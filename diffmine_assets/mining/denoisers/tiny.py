"""`tiny`: a small label-conditioned UNet from diffusers, in pixel space.

Condition 0 is the null condition; label i (in `labels` order) is condition
i + 1, so labels added later append embeddings and old ones keep theirs.

Three ways for the label to reach the network (`conditioning`):
- "class": diffusers' `UNet2DModel` with a class embedding added to the
  time embedding: one vector per label, the same bias at every pixel;
- "film" (the default): the same model and embedding, but every residual
  block's normalised features are scaled and shifted by it
  (`resnet_time_scale_shift: scale_shift`), so the label can gain or mute a
  feature, not only bias it: better held-out accuracy and maps on
  photo-shapes (docs/QUALITY.md, "FiLM conditioning");
- "cross-attention": diffusers' `UNet2DConditionModel`, as Stable Diffusion
  is conditioned: every condition is a short sequence of learned tokens (a
  few shared "generic prompt" tokens, then the condition's own tokens), and
  each pixel of the middle resolutions attends to them, so the label can act
  where its object is and be ignored elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
# diffusers (about 2.5 s to import) is imported where a model is built, so a process that only
# loads the definitions (a Dagster step worker, the CLI) does not pay for it
from safetensors.torch import load_file, save_file

from .base import CONFIG_FILE, Denoiser

WEIGHTS_FILE = "model.safetensors"  # the layout before the diffusers one: still read
UNET_DIR = "unet"
SCHEDULER_DIR = "scheduler"
TOKENS_FILE = "label_tokens.safetensors"
SHARED_TOKENS = 2  # the "generic prompt", the same for every condition
CONDITION_TOKENS = 2  # each condition's own tokens (the null condition's too)


def _common(resolution: int, channels, patch: int) -> dict:
    return {
        "sample_size": resolution // patch,
        "in_channels": 3 * patch * patch,
        "out_channels": 3 * patch * patch,
        "block_out_channels": list(channels),
        "layers_per_block": 1,
        "norm_num_groups": 8,
    }


def default_architecture(resolution: int, channels=(32, 64, 64), patch: int = 1) -> dict:
    # Measured on 2 CPU cores (docs/PERFORMANCE.md, docs/QUALITY.md): about
    # 1.1 M parameters with (32, 64, 64), attention only at the lowest resolution.
    levels = len(channels)
    return {
        **_common(resolution, channels, patch),
        "down_block_types": ["DownBlock2D"] * (levels - 1) + ["AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D"] + ["UpBlock2D"] * (levels - 1),
    }


def cross_attention_architecture(resolution: int, channels=(32, 64, 64), patch: int = 1) -> dict:
    # Cross-attention on every level but the full-resolution one (where a
    # transformer block would cost the most and see the least).
    levels = len(channels)
    return {
        **_common(resolution, channels, patch),
        "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * (levels - 1),
        "up_block_types": ["CrossAttnUpBlock2D"] * (levels - 1) + ["UpBlock2D"],
        "cross_attention_dim": channels[-1],
        "attention_head_dim": 8,
    }


class LabelTokens(torch.nn.Module):
    """Condition id -> the token sequence cross-attention reads: the shared
    tokens, then the condition's own."""

    def __init__(self, conditions: int, dim: int):
        super().__init__()
        self.shared = torch.nn.Parameter(torch.randn(SHARED_TOKENS, dim) * 0.02)
        self.own = torch.nn.Embedding(conditions, CONDITION_TOKENS * dim)
        torch.nn.init.normal_(self.own.weight, std=0.02)
        self.dim = dim

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        own = self.own(cond).view(len(cond), CONDITION_TOKENS, self.dim)
        return torch.cat([self.shared.expand(len(cond), -1, -1), own], dim=1)


class CrossAttentionNet(torch.nn.Module):
    def __init__(self, architecture: dict, conditions: int):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.unet = UNet2DConditionModel(**architecture)
        self.tokens = LabelTokens(conditions, architecture["cross_attention_dim"])

    def forward(self, x, t, cond):
        return self.unet(x, t, encoder_hidden_states=self.tokens(cond)).sample


def _plain_attention(net: torch.nn.Module) -> None:
    """Attention as batched matrix products instead of torch's fused CPU
    kernel: on these short sequences (64 to 256 tokens) the fused kernel's
    backward pass was a fifth of a training step; the plain one trains about
    1.2x faster with the same results (docs/PERFORMANCE.md)."""
    from diffusers.models.attention_processor import AttnProcessor

    for m in net.modules():
        if hasattr(m, "set_processor") and hasattr(m, "processor"):
            m.set_processor(AttnProcessor())


class TinyDenoiser(Denoiser):
    backend = "tiny"

    def __init__(self, labels: list[str], resolution: int, architecture: dict | None = None, num_train_timesteps: int = 1000, seed: int = 0,
                 conditioning: str = "class", channels=(32, 64, 64), patch: int = 1, dropout: float = 0.0):
        if resolution % patch:
            raise ValueError(f"resolution {resolution} is not a multiple of the patch size {patch}")
        self.labels = list(labels)
        self._resolution = resolution
        self.conditioning = conditioning
        self.patch = patch
        if architecture is None:
            build = cross_attention_architecture if conditioning == "cross-attention" else default_architecture
            architecture = build(resolution, tuple(channels), patch)
        self.architecture = dict(architecture)
        if dropout:
            self.architecture["dropout"] = dropout
        self.architecture["sample_size"] = resolution // patch
        self.num_train_timesteps = num_train_timesteps
        torch.manual_seed(seed)
        from diffusers import DDPMScheduler, UNet2DModel

        conditions = len(self.labels) + 1
        if conditioning == "cross-attention":
            self.net = CrossAttentionNet(self.architecture, conditions)
        elif conditioning in ("class", "film"):
            # film: the time + label embedding scales and shifts every
            # normalised feature map (AdaGN, as in Dhariwal & Nichol 2021),
            # instead of only adding a bias to it
            scale_shift = {"resnet_time_scale_shift": "scale_shift"} if conditioning == "film" else {}
            self.net = UNet2DModel(**self.architecture, **scale_shift, num_class_embeds=conditions)
        else:
            raise ValueError(f"unknown conditioning {conditioning!r}; use 'class', 'film' or 'cross-attention'")
        _plain_attention(self.net)
        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps)
        self._alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float32)
        self._index = {k: i + 1 for i, k in enumerate(self.labels)}

    @classmethod
    def from_options(cls, options, labels: list[str], resolution: int, label_texts: dict[str, str], seed: int) -> "TinyDenoiser":
        return cls(labels, resolution, seed=seed, conditioning=options.conditioning, channels=options.channels, patch=options.patch,
                   dropout=options.dropout)

    @property
    def unet(self):
        return self.net.unet if isinstance(self.net, CrossAttentionNet) else self.net

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._alphas_cumprod

    # conditions
    def condition_ids(self, label_keys):
        return torch.tensor([0 if k is None else self._index[k] for k in label_keys], dtype=torch.long)

    def _condition_table(self) -> torch.nn.Embedding:
        return self.net.tokens.own if isinstance(self.net, CrossAttentionNet) else self.net.class_embedding

    def add_labels(self, new_labels: list[str], label_texts: dict[str, str] | None = None, template: str | None = None) -> list[str]:
        """Grow the condition table for labels the model has not seen; the
        rows of the null condition and of known labels are kept as they are."""
        added = [k for k in new_labels if k not in self._index]
        if not added:
            return []
        old = self._condition_table()
        grown = torch.nn.Embedding(old.num_embeddings + len(added), old.embedding_dim)
        with torch.no_grad():
            grown.weight[: old.num_embeddings] = old.weight
            # New labels start from the null condition: "knowing the label"
            # begins as knowing nothing.
            grown.weight[old.num_embeddings :] = old.weight[0]
        if isinstance(self.net, CrossAttentionNet):
            self.net.tokens.own = grown
        else:
            self.net.class_embedding = grown
            self.net.register_to_config(num_class_embeds=grown.num_embeddings)  # so from_pretrained rebuilds it this size
        self.labels += added
        self._index = {k: i + 1 for i, k in enumerate(self.labels)}
        return added

    # model space
    @property
    def resolution(self) -> int:
        return self._resolution

    def encode(self, pixels):
        return pixels

    def decode(self, x):
        return x

    def schedule_config(self) -> dict:
        return dict(self.scheduler.config)

    def predict(self, xt, t, cond):
        # patch > 1: the network sees each patch x patch block of pixels as
        # one cell of 3 * patch^2 channels (space-to-depth, lossless), and
        # its output is put back in place, so losses and maps stay per pixel
        if self.patch > 1:
            xt = F.pixel_unshuffle(xt, self.patch)
        xt = xt.contiguous(memory_format=torch.channels_last)
        out = self.net(xt, t, cond) if isinstance(self.net, CrossAttentionNet) else self.net(xt, t, class_labels=cond).sample
        return F.pixel_shuffle(out, self.patch) if self.patch > 1 else out

    def for_inference(self) -> "TinyDenoiser":
        # channels_last lets oneDNN pick its fast convolution kernels: about
        # 1.6x the forward passes per second on 2 CPU cores (PERFORMANCE.md).
        self.net.eval()
        self.net.to(memory_format=torch.channels_last)
        return self

    @property
    def module(self):
        return self.net

    # persistence
    def config(self) -> dict:
        return {
            "backend": self.backend,
            "layout": "diffusers",
            "conditioning": self.conditioning,
            "labels": self.labels,
            "resolution": self._resolution,
            "architecture": self.architecture,
            "patch": self.patch,
            "num_train_timesteps": self.num_train_timesteps,
            "scheduler": dict(self.scheduler.config),
            "parameters": sum(p.numel() for p in self.net.parameters()),
        }

    def save(self, directory: Path) -> None:
        """The diffusers layout: `unet/` and `scheduler/` by save_pretrained
        (so `UNet2DModel.from_pretrained(dir / "unet")` loads the network),
        the cross-attention label tokens beside them, and denoiser.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # safetensors wants contiguous tensors; for_inference made them channels_last
        self.net.to(memory_format=torch.contiguous_format)
        self.unet.save_pretrained(directory / UNET_DIR, safe_serialization=True)
        if isinstance(self.net, CrossAttentionNet):
            save_file({k: v.contiguous() for k, v in self.net.tokens.state_dict().items()}, directory / TOKENS_FILE)
        self.scheduler.save_pretrained(directory / SCHEDULER_DIR)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> "TinyDenoiser":
        directory = Path(directory)
        cfg = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(cfg["labels"], cfg["resolution"], cfg["architecture"], cfg["num_train_timesteps"], conditioning=cfg.get("conditioning", "class"), patch=cfg.get("patch", 1))
        if (directory / UNET_DIR / "config.json").exists():
            from diffusers import UNet2DConditionModel, UNet2DModel
            from diffusers.utils import is_accelerate_available

            unet_cls = UNet2DConditionModel if isinstance(model.net, CrossAttentionNet) else UNet2DModel
            # accelerate is optional (the sd extra brings it): without it, load the
            # plain way instead of letting diffusers warn on every checkpoint load
            unet = unet_cls.from_pretrained(directory / UNET_DIR, low_cpu_mem_usage=is_accelerate_available())
            if isinstance(model.net, CrossAttentionNet):
                model.net.unet = unet
                model.net.tokens.load_state_dict(load_file(directory / TOKENS_FILE))
            else:
                model.net = unet
            _plain_attention(model.net)
        else:  # a checkpoint of diffmine before 0.x: one safetensors file of the whole network
            model.net.load_state_dict(load_file(directory / WEIGHTS_FILE))
        return model
