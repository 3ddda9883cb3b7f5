"""The denoiser interface that typicality, features and translation use."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import torch

CONFIG_FILE = "denoiser.json"


class UnknownLabelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


class Denoiser(ABC):
    """A noise-prediction network conditioned on a label or on the null
    condition, with the forward-noising schedule it was trained with."""

    backend: str
    labels: list[str]  # label keys the model was trained on, in condition order
    num_train_timesteps: int

    # -- conditions ---------------------------------------------------------------------
    @abstractmethod
    def condition_ids(self, label_keys: list[str | None]) -> torch.Tensor:
        """Condition tensor for a batch; None means the null condition."""

    def check_labels(self, label_keys: list[str]) -> None:
        missing = sorted(set(label_keys) - set(self.labels))
        if missing:
            raise UnknownLabelError(
                f"labels {missing} are not in this checkpoint (trained on {self.labels}); "
                "re-materialize the checkpoint to train on them"
            )

    # -- model space ------------------------------------------------------------------------
    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1], (B, 3, R, R), to the space the network denoises."""

    @abstractmethod
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Model space back to pixels in [-1, 1]."""

    @abstractmethod
    def schedule_config(self) -> dict:
        """The diffusers scheduler config of the noise schedule the network was
        trained with (DDIM sampling and inversion are built from it)."""

    @property
    @abstractmethod
    def resolution(self) -> int:
        """Side, in pixels, of the images the model takes."""

    @property
    @abstractmethod
    def alphas_cumprod(self) -> torch.Tensor:
        """The training schedule's cumulative alphas (float32, CPU)."""

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self.alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    @abstractmethod
    def predict(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise, same shape as xt."""

    def features(self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, block: int) -> torch.Tensor:
        """Activations (B, C, h, w) of up-sampling block `block` of the network
        on a noisy input: the diffusion features (DIFT) of the image, on the CPU."""
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
        return captured["out"].float().cpu().contiguous()

    @property
    @abstractmethod
    def unet(self) -> torch.nn.Module:
        """The diffusers UNet inside (its up_blocks are the decoder)."""

    def injection_points(self, block: int) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
        """What Plug-and-Play injection replaces: the last residual block of
        up-sampling block `block` (its output), and the query and key
        projections of every self-attention layer of the decoder. Found in
        diffusers' own modules, so any diffusers UNet (the tiny one, Stable
        Diffusion's) offers them."""
        from diffusers.models.attention_processor import Attention

        blocks = self.unet.up_blocks
        if not 0 <= block < len(blocks):
            raise ValueError(f"feature block {block} out of range: the network has {len(blocks)} up-sampling blocks")
        resnet = blocks[block].resnets[-1]
        qk = []
        for m in blocks.modules():
            if isinstance(m, Attention) and not m.is_cross_attention:
                qk += [m.to_q, m.to_k]
        return resnet, qk

    def for_inference(self) -> "Denoiser":
        """Put the network in its fastest layout for evaluation."""
        self.module.eval()
        return self

    # -- construction and persistence -------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_options(cls, options, labels: list[str], resolution: int, label_texts: dict[str, str], seed: int) -> "Denoiser":
        """A fresh network as the training options (a `TrainingOptions`)
        describe it; `label_texts` (key -> label text) words the prompts of a
        text-conditioned backend."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> "Denoiser":
        """The denoiser `save` wrote to `directory`."""

    @classmethod
    def untrained_like(cls, directory: Path, options) -> "Denoiser":
        """The control that never learnt the labels: the architecture of the
        checkpoint in `directory`, with its labels, not trained."""
        cfg = saved_config(directory)
        return cls.from_options(options, cfg["labels"], cfg["resolution"], {}, options.seed)

    @abstractmethod
    def config(self) -> dict:
        ...

    @abstractmethod
    def save(self, directory: Path) -> None:
        ...

    @property
    @abstractmethod
    def module(self) -> torch.nn.Module:
        ...


def saved_config(directory: str | Path) -> dict:
    """What `save` wrote beside the weights: backend, labels, resolution, ..."""
    return json.loads((Path(directory) / CONFIG_FILE).read_text())


def weights_digest(directory: str | Path) -> str:
    """A short hash of a saved denoiser's weights (every safetensors file of
    the folder and of its component folders, snapshots left out): the
    checkpoint id."""
    import hashlib

    directory = Path(directory)
    files = sorted(p for p in directory.rglob("*.safetensors") if "snapshots" not in p.relative_to(directory).parts)
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(directory).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]
