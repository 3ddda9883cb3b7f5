"""The options stored results were made with, read back from their records:
what a control is trained and scored with when the config has changed."""

import json

import polars as pl

from diffmine_assets.mining.config import TrainingOptions, TypicalityOptions
from diffmine_assets.mining.config.project import parse_config
from diffmine_assets.mining.evaluation.as_made import changed, recorded, spec_as_made


def test_a_record_gives_the_options_that_change_results_and_the_config_the_rest():
    now = TypicalityOptions(batch_size=8)
    made = TypicalityOptions(n_samples=16, t_max=0.4, batch_size=64)
    back = recorded(now, json.dumps({**made.model_dump(mode="json"), "an_option_since_removed": 1}))
    assert (back.n_samples, back.t_max) == (16, 0.4)
    assert back.batch_size == 8  # how fast it runs here is the config's: it changes no result
    assert changed(now, back) == ["n_samples", "t_max"]
    assert recorded(now, None) is None and recorded(now, "not json") is None and recorded(now, "[1, 2]") is None
    assert recorded(now, json.dumps({"n_samples": -3})) is None  # a record the options refuse is not used
    # a record from before a field existed: the field is what the code did then (the matrix on the maps' draws), not today's default
    older = {k: v for k, v in made.model_dump(mode="json").items() if k != "matrix_t_min" and k != "matrix_t_max"}
    assert now.matrix_range == (0.05, 0.3) and recorded(now, json.dumps(older)).matrix_range is None
    assert {"matrix_t_min", "matrix_t_max"} <= set(changed(now, recorded(now, json.dumps(older))))
    # a checkpoint from before conditioning was recorded was trained with the class embedding (today's default: FiLM)
    assert TrainingOptions().conditioning == "film"
    old_checkpoint = {k: v for k, v in TrainingOptions().model_dump(mode="json").items() if k != "conditioning"}
    assert recorded(TrainingOptions(), json.dumps(old_checkpoint)).conditioning == "class"
    # where the run kept its time, and where a base model lies on this machine, are the config's: not the recipe
    budgeted = TrainingOptions(time_budget=600, model_path="/elsewhere/sd15").model_dump(mode="json")
    assert changed(TrainingOptions(), recorded(TrainingOptions(), json.dumps(budgeted))) == []


def test_the_spec_as_made_takes_each_section_from_its_own_record():
    spec = parse_config({"datasets": [{"name": "d", "kind": "builtin", "training": {"learning_rate": 1e-3}}]}).dataset("d")
    trained = TrainingOptions(learning_rate=5e-4).model_dump(mode="json")
    one = pl.DataFrame({"params": [json.dumps(spec.typicality.model_dump(mode="json"))] * 2})
    said = []
    made = spec_as_made(spec, {"params": json.dumps(trained)}, one, None, None, said.append)
    assert made.training.learning_rate == 5e-4 and made.typicality == spec.typicality
    assert len(said) == 1 and said[0].startswith("training:") and "learning_rate" in said[0]
    # labels scored with different options: no one record speaks for them, the config's are kept, and that is said
    mixed = pl.DataFrame({"params": [json.dumps(TypicalityOptions(n_samples=n).model_dump(mode="json")) for n in (16, 32)]})
    assert spec_as_made(spec, None, mixed, None, None, said.append) is spec
    assert len(said) == 2 and said[1].startswith("typicality:") and "different options" in said[1]
    # the same options written in another key order are one record
    reordered = pl.DataFrame({"params": [json.dumps(spec.typicality.model_dump(mode="json"), sort_keys=s) for s in (True, False)]})
    # nothing changed since: the spec itself, nothing said
    same = spec_as_made(spec, {"params": json.dumps(spec.training.model_dump(mode="json"))}, reordered, None, None, said.append)
    assert same is spec and len(said) == 2


def test_the_translations_chance_level_is_scored_with_their_own_typicality_record():
    from diffmine_assets.mining.evaluation.as_made import translations_as_made

    spec = parse_config({"datasets": [{"name": "d", "kind": "builtin"}]}).dataset("d")
    def rows(typicality):  # the translations' record: their options, the method, the typicality that scored them
        return pl.DataFrame({"params": [json.dumps({**spec.translation.result_options(), "method": "masked", "typicality": typicality})] * 3})
    said = []
    assert translations_as_made(spec, rows(spec.typicality.result_options()), said.append) is spec and said == []
    other = translations_as_made(spec, rows(TypicalityOptions(n_samples=16).result_options()), said.append)
    assert other.typicality.n_samples == 16 and other.translation == spec.translation
    assert len(said) == 1 and said[0].startswith("translations:") and "n_samples" in said[0]
    assert translations_as_made(spec, None, said.append) is spec and translations_as_made(spec, rows(None), said.append) is spec


def test_the_clusters_record_gives_the_cluster_and_feature_options_the_figures_were_made_with():
    from diffmine_assets.mining.config.options import ClusterOptions, FeatureOptions

    spec = parse_config({"datasets": [{"name": "d", "kind": "builtin", "clusters": {"k": 8}, "features": {"block": 2}}]}).dataset("d")
    def rows(k, block):  # the clusters table's record, as the clusters asset writes it: its options, the features' within
        return pl.DataFrame({"params": [json.dumps({**ClusterOptions(k=k).model_dump(), "features": FeatureOptions(block=block).model_dump()}, sort_keys=True)] * 4})
    said = []
    assert spec_as_made(spec, None, None, None, None, said.append, clusters=rows(8, 2)) is spec and said == []
    made = spec_as_made(spec, None, None, None, None, said.append, clusters=rows(32, 1))
    assert (made.clusters.k, made.features.block) == (32, 1) and made.training == spec.training
    assert [line.split(":")[0] for line in said] == ["clusters", "features"]
    # labels clustered from the same features with different k: the features' record still speaks for them all
    mixed = pl.concat([rows(8, 1), rows(16, 1)])
    made = spec_as_made(spec, None, None, None, None, said.append, clusters=mixed)
    assert made.clusters == spec.clusters and made.features.block == 1 and "different options" in said[2]
    # a clusters table from before the record (no params column): the config's, nothing said
    assert spec_as_made(spec, None, None, None, None, said.append, clusters=pl.DataFrame({"rank": [1, 2]})) is spec and len(said) == 4


def test_labels_made_before_a_record_existed_leave_no_one_record_for_all():
    spec = parse_config({"datasets": [{"name": "d", "kind": "builtin"}]}).dataset("d")
    new = json.dumps({**spec.clusters.model_dump(), "k": 8, "features": spec.features.model_dump()})
    # one label re-mined since the record was added, one from before (no params: null after the lake's relaxed concat)
    mixed = pl.DataFrame({"params": [new, None]}, schema={"params": pl.String})
    said = []
    assert spec_as_made(spec, None, None, None, None, said.append, clusters=mixed) is spec
    assert [line.split(":")[0] for line in said] == ["clusters", "features"] and all("different options" in line for line in said)
    # the translations' typicality is read even where their own options differ between labels
    from diffmine_assets.mining.evaluation.as_made import translations_as_made
    typ = {**spec.typicality.result_options(), "n_samples": 16}
    rows = pl.DataFrame({"params": [json.dumps({**spec.translation.result_options(), "steps": s, "typicality": typ}) for s in (10, 20)]})
    assert translations_as_made(spec, rows, said.append).typicality.n_samples == 16
