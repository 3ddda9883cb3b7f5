"""The Stable Diffusion 1.x folder layout (diffusers'): what a usable folder
must hold, and random pipelines of that layout for tests and benchmarks.

Nothing here downloads anything: a pipeline is a folder on disk, written by
diffusers' and transformers' own `save_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

# component -> (files of which one must exist, besides config); the config file first
REQUIRED = {
    "unet": ("config.json", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors")),
    "vae": ("config.json", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.safetensors")),
    "text_encoder": ("config.json", ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors")),
    "tokenizer": (None, ("tokenizer.json", "vocab.json")),
    "scheduler": ("scheduler_config.json", ()),
}


class PipelineFolderError(ValueError):
    """A Stable Diffusion folder that cannot be used; the message lists what
    is expected and what is missing."""


def check_pipeline_folder(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise PipelineFolderError(
            f"Stable Diffusion folder {path} does not exist; training.model_path must name a local Stable Diffusion 1.x folder in the diffusers layout "
            f"({', '.join(f'{c}/' for c in REQUIRED)}), e.g. the result of StableDiffusionPipeline.save_pretrained; diffmine never downloads weights")
    missing = []
    for comp, (config, weights) in REQUIRED.items():
        d = path / comp
        if not d.is_dir():
            missing.append(f"{comp}/")
            continue
        if config and not (d / config).is_file():
            missing.append(f"{comp}/{config}")
        if weights and not any((d / w).is_file() for w in weights):
            missing.append(f"{comp}/{' or '.join(weights)}")
    if missing:
        expected = "; ".join(f"{c}/: {cfg or ''}{' + ' if cfg and w else ''}{' or '.join(w)}" for c, (cfg, w) in REQUIRED.items())
        raise PipelineFolderError(f"Stable Diffusion folder {path} is incomplete: missing {missing}. Expected {expected}")
    return path


def _vocab() -> dict[str, int]:
    """A byte-level vocabulary with no merges: every character is a token,
    so any prompt tokenizes (what a tiny test tokenizer needs)."""
    from tokenizers import pre_tokenizers

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    return vocab


SHAPES = {
    # a few hundred thousand parameters: the whole path runs on a CPU in seconds
    "tiny": {"unet_channels": (32, 64), "layers": 1, "heads": 4, "text_dim": 32, "text_layers": 2, "vae_channels": (32, 64), "latent": 4, "tokens": 16},
    # Stable Diffusion 1.5's own shapes (about 860 M UNet parameters), random weights: for timings on a GPU
    "sd15": {"unet_channels": (320, 640, 1280, 1280), "layers": 2, "heads": 8, "text_dim": 768, "text_layers": 12, "vae_channels": (128, 256, 512, 512),
             "latent": 4, "tokens": 77, "vocab_size": 49408},
}


def random_components(shape: str = "tiny", seed: int = 0) -> dict:
    """The components of a randomly initialised Stable Diffusion 1.x
    pipeline of `shape` (`tiny`, or `sd15`: the real shapes): unet, vae,
    text_encoder, tokenizer, scheduler. Built under `torch.device("meta")`
    they hold shapes and no memory (what a test of the shapes needs)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    s = SHAPES[shape]
    torch.manual_seed(seed)
    levels = len(s["unet_channels"])
    cross = ["CrossAttnDownBlock2D"] * (levels - 1) + ["DownBlock2D"] if levels > 2 else ["CrossAttnDownBlock2D", "DownBlock2D"]
    unet = UNet2DConditionModel(
        sample_size=64 if shape == "sd15" else 8, in_channels=s["latent"], out_channels=s["latent"], layers_per_block=s["layers"],
        block_out_channels=s["unet_channels"], down_block_types=cross, up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (levels - 1),
        cross_attention_dim=s["text_dim"], attention_head_dim=s["heads"], norm_num_groups=32)
    vae_levels = len(s["vae_channels"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=s["latent"], block_out_channels=s["vae_channels"],
                        down_block_types=["DownEncoderBlock2D"] * vae_levels, up_block_types=["UpDecoderBlock2D"] * vae_levels,
                        layers_per_block=2 if shape == "sd15" else 1, norm_num_groups=32, sample_size=512 if shape == "sd15" else 32)
    vocab = _vocab()
    # sd15's embedding table has CLIP's 49,408 rows (123 M text parameters, as released); the byte-level tokenizer uses the first few hundred
    text = CLIPTextModel(CLIPTextConfig(vocab_size=s.get("vocab_size", len(vocab)), hidden_size=s["text_dim"], intermediate_size=4 * s["text_dim"],
                                        num_hidden_layers=s["text_layers"], num_attention_heads=max(1, s["text_dim"] // 64) if shape == "sd15" else 4,
                                        max_position_embeddings=s["tokens"], projection_dim=s["text_dim"], bos_token_id=0, eos_token_id=1, pad_token_id=1))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=s["tokens"])
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text, "tokenizer": tokenizer, "scheduler": scheduler}


def write_random_pipeline(path: str | Path, shape: str = "tiny", seed: int = 0) -> Path:
    """A randomly initialised Stable Diffusion 1.x pipeline of `shape`
    (`tiny`, or `sd15`: the real shapes) saved in the diffusers layout."""
    path = Path(path)
    for name, component in random_components(shape, seed).items():
        component.save_pretrained(path / name)
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None], "feature_extractor": [None, None],
        "requires_safety_checker": False}, indent=2))
    return path
