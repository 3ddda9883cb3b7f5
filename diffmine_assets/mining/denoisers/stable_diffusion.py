"""`stable-diffusion`: the paper's model, a local Stable Diffusion 1.x folder
(diffusers layout) finetuned in latent space behind the Denoiser interface.

Condition 0 is the dataset's generic prompt ("Chest X-Ray."), the null the
paper compares against; label i is its prompt ("Chest X-Ray with Mass.").
Each prompt is encoded by the frozen text encoder once and kept, so a
condition costs an index. Images enter model space through the frozen VAE
(the latent distribution's mean times the VAE's scaling factor), each image
encoded once per process and kept. The network runs on CUDA when there is
one; every method takes and returns CPU tensors, so the mining code is the
same for both backends (a transfer per call, small beside a UNet pass).
Trained weights are saved with `save_pretrained` (the whole UNet) or, with
LoRA, diffusers' `save_lora_adapter`, beside denoiser.json, which records the
base folder they were finetuned from; both load with `from_pretrained` /
`load_lora_adapter` over that base.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import torch

from .base import CONFIG_FILE, Denoiser
from .sd_layout import check_pipeline_folder

UNET_DIR = "unet"
LORA_DIR = "unet_lora"
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
ENCODE_BATCH = 8
CACHE_IMAGES = 20_000  # latents kept per process: 4 x 64 x 64 floats (64 KB) each at 512 px


def _transformers():
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise ImportError("the stable-diffusion backend needs transformers: pip install 'diffmine[sd]'") from None
    return CLIPTextModel, CLIPTokenizer


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class StableDiffusionDenoiser(Denoiser):
    backend = "stable-diffusion"

    def __init__(self, labels: list[str], resolution: int, *, model_path: str | Path, prompts: dict[str, str], null_prompt: str,
                 lora_rank: int = 0, weights: Path | None = None, gradient_checkpointing: bool = True, device: torch.device | None = None):
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

        CLIPTextModel, CLIPTokenizer = _transformers()
        self.base = check_pipeline_folder(model_path).resolve()
        self.labels = list(labels)
        self.prompts = {k: prompts[k] for k in self.labels}
        self.null_prompt = null_prompt
        self.lora_rank = lora_rank
        self._resolution = resolution
        self.device = device or pick_device()
        self.tokenizer = CLIPTokenizer.from_pretrained(self.base / "tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(self.base / "text_encoder").to(self.device).eval().requires_grad_(False)
        self.vae = AutoencoderKL.from_pretrained(self.base / "vae").to(self.device).eval().requires_grad_(False)
        full = weights is not None and (weights / UNET_DIR / "config.json").exists()
        self.net = UNet2DConditionModel.from_pretrained(weights / UNET_DIR if full else self.base / "unet")
        if lora_rank:
            self._add_lora(weights / LORA_DIR if weights is not None and (weights / LORA_DIR).is_dir() else None)
        self.net.to(self.device)
        if gradient_checkpointing and self.device.type == "cuda":
            self.net.enable_gradient_checkpointing()
        # SD ships a PNDM config; its betas are the training schedule, which is all DDPM (and DDIM) need
        self.scheduler = DDPMScheduler.from_pretrained(self.base / "scheduler")
        self.num_train_timesteps = self.scheduler.config.num_train_timesteps
        self._alphas_cumprod = self.scheduler.alphas_cumprod.to(torch.float32)
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        down = 2 ** (len(self.net.config.block_out_channels) - 1)
        if resolution % (self.vae_scale * down):
            raise ValueError(f"resolution {resolution} must be a multiple of {self.vae_scale * down} for this Stable Diffusion folder "
                             f"(the VAE divides by {self.vae_scale}, the UNet by {down})")
        self._embeds = self._encode_prompts([null_prompt] + [self.prompts[k] for k in self.labels])
        self._latents: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    @classmethod
    def from_options(cls, options, labels: list[str], resolution: int, label_texts: dict[str, str], seed: int) -> "StableDiffusionDenoiser":
        torch.manual_seed(seed)  # the LoRA adapters' initialisation
        if options.model_path is None:
            raise ValueError("training.backend stable-diffusion needs training.model_path: a local Stable Diffusion 1.x folder (diffusers layout)")
        prompts = {k: options.prompt_template.format(label=label_texts.get(k, k)) for k in labels}
        return cls(labels, resolution, model_path=options.model_path, prompts=prompts, null_prompt=options.null_prompt,
                   lora_rank=options.lora_rank, gradient_checkpointing=options.gradient_checkpointing)

    def _add_lora(self, saved: Path | None) -> None:
        try:
            from peft import LoraConfig
        except ImportError:
            raise ImportError("training.lora_rank needs peft: pip install 'diffmine[sd]'") from None
        self.net.requires_grad_(False)
        if saved is not None:
            self.net.load_lora_adapter(saved, prefix=None, adapter_name="default", weight_name=LORA_WEIGHTS, use_safetensors=True)
            for name, p in self.net.named_parameters():
                p.requires_grad_("lora_" in name)
        else:
            self.net.add_adapter(LoraConfig(r=self.lora_rank, lora_alpha=self.lora_rank, init_lora_weights="gaussian",
                                            target_modules=["to_q", "to_k", "to_v", "to_out.0"]))

    @torch.no_grad()
    def _encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.device)).last_hidden_state.float()

    # conditions
    def condition_ids(self, label_keys):
        index = {k: i + 1 for i, k in enumerate(self.labels)}
        return torch.tensor([0 if k is None else index[k] for k in label_keys], dtype=torch.long)

    def add_labels(self, new_labels: list[str], label_texts: dict[str, str] | None = None, template: str | None = None) -> list[str]:
        added = [k for k in new_labels if k not in self.labels]
        if added:
            template = template or "{label}"
            for k in added:
                self.prompts[k] = template.format(label=(label_texts or {}).get(k, k))
            self.labels += added
            self._embeds = torch.cat([self._embeds, self._encode_prompts([self.prompts[k] for k in added])])
        return added

    # model space
    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._alphas_cumprod

    @torch.no_grad()
    def encode(self, pixels):
        """VAE latents (mean, scaled) of pixels in [-1, 1]; each image's once."""
        keys = [hashlib.blake2b(p.contiguous().numpy().tobytes(), digest_size=16).digest() for p in pixels]
        todo = [i for i, k in enumerate(keys) if k not in self._latents]
        for s in range(0, len(todo), ENCODE_BATCH):
            idx = todo[s : s + ENCODE_BATCH]
            x = pixels[idx].to(self.device, torch.float32)
            z = self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
            for i, zi in zip(idx, z.float().cpu()):
                self._latents[keys[i]] = zi
                while len(self._latents) > CACHE_IMAGES:
                    self._latents.popitem(last=False)
        return torch.stack([self._latents[k] for k in keys]) if keys else torch.empty(0, self.net.config.in_channels, 0, 0)

    @torch.no_grad()
    def decode(self, x):
        out = []
        for s in range(0, len(x), ENCODE_BATCH):
            z = x[s : s + ENCODE_BATCH].to(self.device, torch.float32) / self.vae.config.scaling_factor
            out.append(self.vae.decode(z).sample.clamp(-1, 1).float().cpu())
        return torch.cat(out)

    def schedule_config(self) -> dict:
        return dict(self.scheduler.config)

    def predict(self, xt, t, cond):
        states = self._embeds[cond.to(self.device)]
        out = self.net(xt.to(self.device), t.to(self.device), encoder_hidden_states=states).sample
        return out.to(xt.device)

    @property
    def unet(self):
        return self.net

    @property
    def module(self):
        return self.net

    # persistence
    def config(self) -> dict:
        return {
            "backend": self.backend,
            "layout": "diffusers",
            "labels": self.labels,
            "prompts": self.prompts,
            "null_prompt": self.null_prompt,
            "resolution": self._resolution,
            "lora_rank": self.lora_rank,
            "base": {"path": str(self.base), "unet_config": json.loads((self.base / "unet" / "config.json").read_text()).get("_class_name")},
            "num_train_timesteps": self.num_train_timesteps,
            "scheduler": dict(self.scheduler.config),
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "trainable_parameters": sum(p.numel() for p in self.net.parameters() if p.requires_grad),
        }

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.lora_rank:
            self.net.save_lora_adapter(directory / LORA_DIR, adapter_name="default", weight_name=LORA_WEIGHTS)
        else:
            self.net.save_pretrained(directory / UNET_DIR, safe_serialization=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, default=str))

    @classmethod
    def untrained_like(cls, directory: Path, options=None) -> "StableDiffusionDenoiser":
        """The base model a checkpoint was finetuned from, with the same
        labels and prompts: the paper's control (finetuning is what makes
        typicality informative)."""
        cfg = json.loads((Path(directory) / CONFIG_FILE).read_text())
        return cls(cfg["labels"], cfg["resolution"], model_path=cfg["base"]["path"], prompts=cfg["prompts"], null_prompt=cfg["null_prompt"])

    @classmethod
    def load(cls, directory: Path) -> "StableDiffusionDenoiser":
        directory = Path(directory)
        cfg = json.loads((directory / CONFIG_FILE).read_text())
        base = Path(cfg["base"]["path"])
        if not base.is_dir():
            raise FileNotFoundError(f"checkpoint {directory} was finetuned from the Stable Diffusion folder {base}, which is gone: put it back (or link it) there")
        return cls(cfg["labels"], cfg["resolution"], model_path=base, prompts=cfg["prompts"], null_prompt=cfg["null_prompt"],
                   lora_rank=cfg.get("lora_rank", 0), weights=directory)
