import hashlib
import json

import pytest
import yaml

from diffmine_assets.mining.config import ConfigError, load_config, parse_config


def test_typo_in_a_field_is_named_with_a_suggestion():
    with pytest.raises(ConfigError) as e:
        parse_config({"datasets": [{"name": "b", "kind": "builtin", "options": {"images_per_lable": 3}}]}, "diffmine.yaml")
    msg = str(e.value)
    assert "diffmine.yaml" in msg and "datasets[0].options.images_per_lable" in msg and "did you mean 'images_per_label'" in msg


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(ConfigError, match=r"datasets\[0\].kind: unknown dataset kind 'folders'; kinds are \['builtin', 'folder', 'manifest', 'cardb', 'ftt', 'g3', 'places365', 'chestxray14'\]"):
        parse_config({"datasets": [{"name": "b", "kind": "folders", "path": "x"}]})


def test_out_of_range_and_bad_name_and_duplicates():
    with pytest.raises(ConfigError, match=r"val_fraction"):
        parse_config({"datasets": [{"name": "b", "kind": "builtin", "options": {"val_fraction": 1.5}}]})
    with pytest.raises(ConfigError, match=r"dataset name 'My Data'"):
        parse_config({"datasets": [{"name": "My Data", "kind": "folder", "path": "x"}]})
    with pytest.raises(ConfigError, match=r"repeated: \['b'\]"):
        parse_config({"datasets": [{"name": "b", "kind": "builtin"}, {"name": "b", "kind": "builtin"}]})


def test_manifest_takes_one_label_source():
    with pytest.raises(ConfigError, match="either label_column or label_from"):
        parse_config({"datasets": [{"name": "m", "kind": "manifest", "path": "m.csv", "options": {"label_column": "x", "label_from": {"column": "year", "rule": "decade"}}}]})


def test_the_lake_is_a_folder_or_a_url_and_a_deployment_may_override_it(tmp_path, monkeypatch):
    p = tmp_path / "conf.yaml"
    p.write_text(yaml.safe_dump({"lake": "s3://bucket/lab/lake", "datasets": [{"name": "f", "kind": "folder", "path": "imgs"}]}))
    assert load_config(p).lake == "s3://bucket/lab/lake"
    monkeypatch.setenv("DIFFMINE_LAKE_URL", "s3://other/lake")
    assert load_config(p).lake == "s3://other/lake"


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "conf.yaml"
    p.write_text(yaml.safe_dump({"lake": "L", "datasets": [{"name": "f", "kind": "folder", "path": "../imgs"}]}))
    cfg = load_config(p)
    assert cfg.lake == str((tmp_path / "sub" / "L").resolve())
    assert cfg.dataset("f").path == (tmp_path / "imgs").resolve()
    with pytest.raises(ConfigError, match=r"no dataset named 'g'.*declared: \['f'\]"):
        cfg.dataset("g")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_the_stable_diffusion_backend_takes_the_papers_finetuning_where_the_config_is_silent(tmp_path):
    def training(kind, **extra):
        raw = {"datasets": [{"name": "x", "kind": kind, "path": ".", "training": {"backend": "stable-diffusion", "model_path": "sd", **extra}}]}
        return parse_config(raw).datasets[0].training

    t = training("chestxray14", learning_rate=2e-5)
    assert (t.learning_rate, t.label_dropout, t.epochs, t.timesteps, t.loss_weighting, t.snapshots) == (2e-5, 0.05, 100.0, "uniform", "none", 0)
    assert (t.prompt_template, t.null_prompt) == ("Chest X-Ray with {label}.", "Chest X-Ray.")
    assert training("folder", lora_rank=8).snapshots == 5 and training("folder").prompt_template == "An image of {label}."
    assert training("cardb", prompt_template="A {label} car.").prompt_template == "A {label} car."
    with pytest.raises(ConfigError, match="has no {label}"):
        training("cardb", prompt_template="A car.")
    tiny = parse_config({"datasets": [{"name": "x", "kind": "folder", "path": "."}]}).datasets[0].training
    assert (tiny.learning_rate, tiny.label_dropout, tiny.prompt_template) == (1e-3, 0.1, None)
    # the tiny default moved to FiLM; Stable Diffusion, which does not read the field, keeps the value its checkpoints were hashed with
    assert (tiny.conditioning, t.conditioning) == ("film", "class")


def test_the_label_matrix_has_its_own_timestep_range_on_the_tiny_backend_only():
    def typicality(training=None, **typ):
        raw = {"name": "x", "kind": "folder", "path": ".", "typicality": typ, **({"training": training} if training else {})}
        return parse_config({"datasets": [raw]}).datasets[0].typicality

    sd = {"backend": "stable-diffusion", "model_path": "sd"}
    # measured on the CPU model (QUALITY.md); Stable Diffusion scores the matrix on the maps' draws, as its figures were measured
    assert (typicality().t_min, typicality().t_max, typicality().matrix_range) == (0.1, 0.5, (0.05, 0.3))
    assert (typicality(sd).t_min, typicality(sd).t_max, typicality(sd).matrix_range) == (0.1, 0.5, None)
    assert typicality(sd, matrix_t_min=0.02, matrix_t_max=0.2).matrix_range == (0.02, 0.2)
    assert typicality(None, matrix_t_min=None, matrix_t_max=None).matrix_range is None
    # ... also for a dataset built in code
    from diffmine_assets.mining.config.datasets import BuiltinDataset
    from diffmine_assets.mining.config.options import TrainingOptions, TypicalityOptions

    coded = BuiltinDataset(name="x", kind="builtin", training=TrainingOptions(backend="stable-diffusion", model_path="sd"), typicality=TypicalityOptions(n_samples=8, groups=2))
    assert coded.typicality.matrix_range is None and coded.typicality.n_samples == 8
    assert BuiltinDataset(name="x", kind="builtin", typicality=TypicalityOptions(n_samples=8, groups=2)).typicality.matrix_range == (0.05, 0.3)
    # a Stable Diffusion project's typicality results stay current: hashed as before the fields existed
    legacy = {k: v for k, v in typicality(sd).result_options().items() if not k.startswith("matrix_t_")}
    assert typicality(sd).version() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:12]
    assert typicality().version() != typicality(None, matrix_t_min=None, matrix_t_max=None).version()


def test_an_option_added_at_its_neutral_value_keeps_existing_results_current_and_changes_them_when_set():
    from diffmine_assets.mining.config.options import TrainingOptions

    base = TrainingOptions()
    assert base.result_options()["dropout"] == 0.0  # recorded with the results
    # ... but hashed as before `dropout` existed, so every checkpoint made then stays current
    legacy = {k: v for k, v in base.result_options().items() if k != "dropout"}
    assert base.version() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:12]
    assert TrainingOptions(dropout=0.1).version() != base.version()
    # a training state saved before the field existed still resumes: its identity names the options the same way
    assert "dropout" not in base.identity_options() and TrainingOptions(dropout=0.1).identity_options()["dropout"] == 0.1
    # ... and a checkpoint whose options lack it is the network it was: new data continues it when nothing else differs
    assert base.network_changes(legacy) == {}
    assert TrainingOptions(dropout=0.1).network_changes(legacy) == {"dropout": (0.0, 0.1)}
    assert base.network_changes({**legacy, "learning_rate": 0.5}) == {}  # the recipe is not the network
    # a checkpoint from before conditioning, dropout and lora_rank were recorded was a class-embedding network without them
    older = {k: v for k, v in legacy.items() if k not in ("conditioning", "lora_rank")}
    assert TrainingOptions(conditioning="class").network_changes(older) == {}
    assert base.network_changes(older) == {"conditioning": ("class", "film")}
    # channels had another default then: not recorded is another network
    assert base.network_changes({k: v for k, v in older.items() if k != "channels"}) == {"channels": ("not recorded", [64, 64, 64]), "conditioning": ("class", "film")}
    with pytest.raises(ConfigError, match="dropout is an option of the tiny backend"):
        parse_config({"datasets": [{"name": "x", "kind": "folder", "path": ".",
                                    "training": {"backend": "stable-diffusion", "model_path": "sd", "dropout": 0.1}}]})
