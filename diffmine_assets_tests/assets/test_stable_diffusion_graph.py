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

from diffmine_assets.cli import main as cli_main  # noqa: E402
from diffmine_assets.mining.denoisers.registry import load_denoiser  # noqa: E402
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
