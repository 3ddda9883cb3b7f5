"""The stable-diffusion backend through the whole graph, on CPU, with a tiny
randomly initialised pipeline of Stable Diffusion's layout written by the
test (UNet2DConditionModel, AutoencoderKL, a CLIP text model and tokenizer):
checkpoint -> typicality -> patches -> features -> clusters -> translations,
the path and not the quality."""

import json

import pytest
import torch
from dagster import DagsterInstance

pytest.importorskip("transformers")

from diffmine_assets.bench.sd_graph import STAGES, stage_table  # noqa: E402
from diffmine_assets.cli import main as cli_main  # noqa: E402
from diffmine_assets.mining.denoisers.registry import load_denoiser  # noqa: E402
from diffmine_assets.partitions import asset_key  # noqa: E402
from diffmine_assets.mining.denoisers.sd_layout import PipelineFolderError, write_random_pipeline  # noqa: E402
from diffmine_assets.runner import run_dataset  # noqa: E402
from diffmine_assets.storage.catalog import Catalog  # noqa: E402
from diffmine_assets.storage.lake import Lake  # noqa: E402
from diffmine_assets_tests.collection_fixtures import write_chestxray14  # noqa: E402
from diffmine_assets_tests.conftest import FAST, write_config  # noqa: E402


def query(root, sql):
    with Catalog(root / "catalog.duckdb", Lake(root / "lake")).reader() as con:
        return con.execute(sql).fetchall()


@pytest.mark.slow
def test_the_whole_graph_runs_on_a_tiny_stable_diffusion_pipeline(tmp_path, monkeypatch, capsys):
    from diffusers import UNet2DConditionModel

    pipe = write_random_pipeline(tmp_path / "sd")
    write_chestxray14(tmp_path / "cx", per_finding=2)
    training = {**FAST["training"], "backend": "stable-diffusion", "model_path": str(pipe), "snapshots": 2}
    cfg = write_config(tmp_path, [{"name": "xray", "kind": "chestxray14", "path": str(tmp_path / "cx"), "options": {"resolution": 32},
                                   **FAST, "training": training, "patches": {**FAST["patches"], "window_px": 16}}])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    instance = DagsterInstance.get()
    lines = []
    result = run_dataset(instance, cfg, "xray", log=lines.append, verbose=True)
    assert result["failed_runs"] == 0, "\n".join(lines[-40:])
    (ckpt_path, backend), = query(tmp_path, "select path, backend from checkpoint")
    assert backend == "stable-diffusion"
    model = load_denoiser(ckpt_path)
    assert model.prompts == {k: f"Chest X-Ray with {t}." for k, t in query(tmp_path, "select distinct label_key, label from images")}
    assert model.null_prompt == "Chest X-Ray."
    # diffusers' own tooling loads the finetuned UNet
    unet = UNet2DConditionModel.from_pretrained(f"{ckpt_path}/unet")
    z = torch.randn(1, 4, 16, 16)
    t = torch.tensor([300])
    cond = model.condition_ids([model.labels[0]])
    with torch.no_grad():
        assert torch.allclose(unet(z, t, encoder_hidden_states=model._embeds[cond]).sample, model.predict(z, t, cond), atol=1e-5)
    labels = len(query(tmp_path, "select distinct label_key from images"))
    # maps are on the latent grid (16 x 16 for 32 px through a VAE that halves), patches in image pixels
    assert query(tmp_path, "select count(distinct label_key) from image_typicality") == [(labels,)]
    assert query(tmp_path, "select min(x0) >= 0, max(x1) <= 64 from patch_typicality") == [(True, True)]
    assert query(tmp_path, "select count(distinct label_key) from clusters") == [(labels,)]
    assert query(tmp_path, "select count(*) > 0 from patch_features") == [(True,)]
    assert query(tmp_path, "select count(*) > 0 from translations") == [(True,)]
    # each network step records its seconds and peak memory, which `bench sd --graph` tabulates per stage with the bytes stored
    stages = {row["stage"]: row for row in stage_table(instance, tmp_path / "lake", "xray")}
    assert set(stages) == set(STAGES) and stages["typicality"]["partitions"] == labels
    assert all(row["stored_bytes"] > 0 for row in stages.values())
    # the peak is the step's own (reset when it starts), not the process's since it began
    mat = instance.get_latest_materialization_event(asset_key("xray", "patch_features")).asset_materialization
    assert "step_peak_rss_mib" in mat.metadata and "process_peak_rss_mib" not in mat.metadata
    assert stages["finetune"]["seconds"] > 0 and stages["typicality"]["seconds"] > 0 and stages["translation"]["seconds"] > 0
    # the untrained control of this backend is the pretrained pipeline with the same prompts
    assert cli_main(["--config", str(cfg), "eval", "--dataset", "xray", "--control", "untrained", "--no-baseline"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["control"]["kind"] == "untrained" and 0 <= figures["localisation_ap"] <= 1
    instance.dispose()


def test_lora_trains_and_saves_only_the_adapters_which_load_over_the_base(tmp_path):
    from diffmine_assets.mining.training.checkpoints import fit
    from diffmine_assets.mining.datasets.ingest import ingest
    from diffmine_assets.mining.config import parse_config

    pipe = write_random_pipeline(tmp_path / "sd")
    write_chestxray14(tmp_path / "cx", per_finding=2)
    spec = parse_config({"datasets": [{"name": "x", "kind": "chestxray14", "path": str(tmp_path / "cx"), "options": {"resolution": 32},
                                       "training": {"backend": "stable-diffusion", "model_path": str(pipe), "lora_rank": 4, "steps": 4, "batch_size": 4,
                                                    "warmup_steps": 0, "learning_rate": 0.01, "ema_decay": 0, "snapshots": 0}}]}).datasets[0]
    images = ingest("x", spec, tmp_path / "_f").images
    fitted = fit("x", images, spec.training, 32, "v", tmp_path / "ck")
    saved = sorted(p.name for p in fitted.path.iterdir())
    assert saved == ["denoiser.json", "training.json", "unet_lora"] and (fitted.path / "unet_lora" / "pytorch_lora_weights.safetensors").is_file()
    cfg = fitted.model.config()
    assert 0 < cfg["trainable_parameters"] < cfg["parameters"] / 10
    base = {n: p for n, p in fitted.model.net.named_parameters() if "lora_" not in n}
    fresh = load_denoiser(fitted.path)
    assert all(torch.equal(p, base[n]) for n, p in fresh.net.named_parameters() if "lora_" not in n)  # the base is untouched
    z, t = torch.randn(2, 4, 16, 16), torch.tensor([100, 700])
    cond = fresh.condition_ids([fresh.labels[0], None])
    with torch.no_grad():
        assert torch.allclose(fresh.predict(z, t, cond), fitted.model.predict(z, t, cond), atol=1e-5)
        pretrained = type(fresh).untrained_like(fitted.path)
        assert not torch.allclose(pretrained.predict(z, t, cond), fresh.predict(z, t, cond), atol=1e-4)  # the adapters changed something


def test_a_missing_or_incomplete_pipeline_folder_is_named_with_what_is_missing(tmp_path):
    from diffmine_assets.mining.config import parse_config
    from diffmine_assets.mining.denoisers.registry import new_denoiser

    spec = parse_config({"datasets": [{"name": "x", "kind": "folder", "path": str(tmp_path),
                                       "training": {"backend": "stable-diffusion", "model_path": str(tmp_path / "nowhere")}}]}).datasets[0]
    with pytest.raises(PipelineFolderError, match="does not exist.*never downloads"):
        new_denoiser(spec.training, ["a"], 64)
    (tmp_path / "nowhere" / "unet").mkdir(parents=True)
    (tmp_path / "nowhere" / "unet" / "config.json").write_text("{}")
    with pytest.raises(PipelineFolderError, match=r"missing \['unet/diffusion_pytorch_model.safetensors or .*'vae/', 'text_encoder/', 'tokenizer/', 'scheduler/'\]"):
        new_denoiser(spec.training, ["a"], 64)
    from diffmine_assets.mining.config import ConfigError

    with pytest.raises(ConfigError, match="needs model_path"):
        parse_config({"datasets": [{"name": "x", "kind": "folder", "path": ".", "training": {"backend": "stable-diffusion"}}]})


def test_bench_sd_smoke_on_the_tiny_shape(tmp_path):
    from diffmine_assets.bench.sd import sd_benchmark

    out = sd_benchmark(tmp_path, "tiny", 32, ("float32",), images=2, n_samples=8, steps=2, batch=2, log=lambda _: None)
    (run,) = out["runs"]
    assert out["latent"] == [4, 16, 16] and out["device"].startswith("cpu")
    assert run["finetune_steps_per_s"] > 0 and run["typicality_images_per_s"] > 0 and run["published_loop_images_per_s"] > 0
    assert run["engine_over_published"] == round(run["typicality_images_per_s"] / run["published_loop_images_per_s"], 2)


def test_bench_sd_graph_parts_on_the_tiny_shape(tmp_path):
    """The photographs and the per-unit probe of `bench sd --graph` (the
    whole command is the graph test above plus these)."""
    from PIL import Image

    from diffmine_assets.bench.sd_graph import write_photographs
    from diffmine_assets.bench.sd_probe import probe

    names = write_photographs(tmp_path / "images", labels=2, per_label=2, size=64)
    files = sorted(p.relative_to(tmp_path / "images").as_posix() for p in (tmp_path / "images").rglob("*.png"))
    assert files == [f"{n}/{n}_{i:03d}.png" for n in names for i in range(2)] and Image.open(tmp_path / "images" / files[0]).size == (64, 64)
    pipe = write_random_pipeline(tmp_path / "sd")
    full, lora = probe(pipe, "train", 2, 32), probe(pipe, "train", 2, 32, lora_rank=4)
    assert full["trainable_parameters"] == full["unet_parameters"] and 0 < lora["trainable_parameters"] < lora["unet_parameters"] / 10
    assert full["precision"] in ("float32", "bfloat16") and full["seconds"] > 0 and full["peak_rss_mib"] is not None
    with pytest.raises(ValueError, match="unit 'sample'"):
        probe(pipe, "sample", 1, 32)


def test_with_lora_the_average_and_the_saved_state_hold_the_adapters_only(tmp_path):
    """At Stable Diffusion's size an average of the whole state dict is a
    second 3.4 GB UNet in memory and in every saved state: only what trains
    is averaged, checked and saved."""
    from safetensors.torch import load_file

    from diffmine_assets.mining.config import TrainingOptions
    from diffmine_assets.mining.denoisers.stable_diffusion import StableDiffusionDenoiser
    from diffmine_assets.mining.training.loop import train
    from diffmine_assets.mining.training.state import EMA_FILE

    pipe = write_random_pipeline(tmp_path / "sd")
    model = StableDiffusionDenoiser(["a", "b"], 32, model_path=pipe, prompts={"a": "An image of a.", "b": "An image of b."}, null_prompt="An image.", lora_rank=4)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
    keys = ["a", "b"] * 4
    opts = TrainingOptions(steps=4, batch_size=2, warmup_steps=0, learning_rate=0.01, ema_decay=0.9, snapshots=0, save_every=2, log_every=2,
                           diagnostic_every=2)
    result = train(model, pixels[:6], keys[:6], [f"{i}.png" for i in range(6)], opts, tmp_path / "state", meta={},
                   val_pixels=pixels[6:], val_label_keys=keys[6:])
    assert result.steps == 4 and result.diagnostics
    saved = load_file(tmp_path / "state" / EMA_FILE)
    trainable = {n for n, p in model.net.named_parameters() if p.requires_grad}
    assert set(saved) == trainable and all("lora_" in n for n in saved)
    assert sum(v.numel() for v in saved.values()) < sum(p.numel() for p in model.net.parameters()) / 10


def test_the_sd15_shape_has_stable_diffusion_1_5s_parameter_counts():
    """The bench's pipeline is SD 1.5's configuration: the released model's
    exact parameter counts (UNet, VAE, CLIP ViT-L/14 text encoder), built on
    the meta device, which holds shapes and no memory."""
    from diffmine_assets.mining.denoisers.sd_layout import random_components

    with torch.device("meta"):
        parts = random_components("sd15")
    counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items() if hasattr(part, "parameters")}
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
