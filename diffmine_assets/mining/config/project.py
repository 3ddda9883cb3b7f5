"""The project configuration (`diffmine.yaml`): the lake, the catalog and the
declared datasets, validated before any work.

A typo'd field or an unknown kind fails with the file, the field's path and,
where one is close, the field that was probably meant.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from .datasets import KIND_MODELS, KINDS, DatasetSpec, LabelRule
from .options import _Strict

CONFIG_ENV = "DIFFMINE_CONFIG"
CONFIG_NAME = "diffmine.yaml"


class ConfigError(ValueError):
    """The configuration file is wrong; the message says where and how."""


class ProjectConfig(_Strict):
    # a folder (relative to this file) or an object-store URL (s3://bucket/prefix)
    lake: str = "data/lake"
    catalog: Path = Path("data/catalog.duckdb")
    datasets: list[DatasetSpec] = Field(min_length=1)
    config_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> "ProjectConfig":
        names = [d.name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset names must be unique; repeated: {dupes}")
        # job and op names are identifiers: '-' reads as '_' there
        by_ident: dict[str, list[str]] = {}
        for n in names:
            by_ident.setdefault(n.replace("-", "_"), []).append(n)
        clashes = [v for v in by_ident.values() if len(v) > 1]
        if clashes:
            raise ValueError(f"dataset names that differ only by '-' against '_' cannot be told apart in Dagster's job names: {clashes}")
        return self

    def dataset(self, name: str):
        for d in self.datasets:
            if d.name == name:
                return d
        raise ConfigError(
            f"no dataset named {name!r} in {self.config_path}; declared: {[d.name for d in self.datasets]}"
        )

    @property
    def dataset_names(self) -> list[str]:
        return [d.name for d in self.datasets]


# the lake every process of a remote deployment shares (deployment.py)
LAKE_ENV = "DIFFMINE_LAKE_URL"


def _lake_location(lake: str, absolute) -> str:
    """The lake this process uses: $DIFFMINE_LAKE_URL when a deployment sets
    it (every machine of a cluster shares one), else diffmine.yaml's, with a
    relative folder taken from the file's own folder."""
    lake = os.environ.get(LAKE_ENV) or str(lake)
    return lake if "://" in lake else str(absolute(Path(lake)))


def default_config_path() -> Path:
    """$DIFFMINE_CONFIG, else ./diffmine.yaml, else the one beside the package."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd() / CONFIG_NAME
    if here.exists():
        return here.resolve()
    return (Path(__file__).resolve().parents[3] / CONFIG_NAME).resolve()


def _model_fields(model: type[BaseModel] | None) -> list[str]:
    return list(model.model_fields) if model else []


def _describe(err: dict[str, Any], raw: Any) -> str:
    loc = err["loc"]
    # pydantic puts the discriminator's value ("builtin") into the location of
    # a tagged union member; users never wrote that level, so it is left out.
    shown = [p for i, p in enumerate(loc) if not (p in KINDS and i > 0 and isinstance(loc[i - 1], int))]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in shown).lstrip(".")
    if err["type"] == "extra_forbidden":
        field = str(loc[-1])
        model = _owner_model(loc[:-1], raw)
        hint = difflib.get_close_matches(field, _model_fields(model), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {_model_fields(model)})"
        return f"{where}: unknown field{extra}"
    if err["type"] == "union_tag_invalid":
        given = err.get("ctx", {}).get("tag", "?")
        return f"{where}.kind: unknown dataset kind {given!r}; kinds are {list(KINDS)}"
    return f"{where}: {err['msg']}"


def _owner_model(loc: tuple, raw: Any) -> type[BaseModel] | None:
    """The pydantic model that the location `loc` points into."""
    model: type[BaseModel] | None = ProjectConfig
    node = raw
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if model is ProjectConfig and part == "datasets":
            node = node.get("datasets") if isinstance(node, dict) else None
            model = None
            continue
        if part in KIND_MODELS:
            model = KIND_MODELS[part]
            continue
        if model is not None and part in model.model_fields:
            ann = model.model_fields[part].annotation
            node = node.get(part) if isinstance(node, dict) else None
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if model is None and part == "label_from":
                model = LabelRule
    return model


def parse_config(raw: Any, source: str | Path = "<config>") -> ProjectConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'datasets' list, got {type(raw).__name__}")
    try:
        cfg = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw) for e in exc.errors()]
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines)) from None
    return cfg


def load_config(path: str | Path | None = None) -> ProjectConfig:
    """Read and validate the project configuration; relative paths in it are
    resolved against the file's own folder."""
    path = Path(path).expanduser().resolve() if path else default_config_path()
    if not path.exists():
        raise ConfigError(f"configuration file {path} does not exist (set ${CONFIG_ENV} or create it)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    cfg = parse_config(raw, path)
    base = path.parent

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    def paths(d):
        update = {"path": absolute(d.path)} if hasattr(d, "path") else {}
        if getattr(d, "boxes", None) is not None:
            update["boxes"] = absolute(d.boxes)
        if d.training.model_path is not None:
            update["training"] = d.training.model_copy(update={"model_path": absolute(d.training.model_path)})
        return d.model_copy(update=update) if update else d

    datasets = [paths(d) for d in cfg.datasets]
    return cfg.model_copy(
        update={
            "lake": _lake_location(cfg.lake, absolute),
            "catalog": absolute(cfg.catalog),
            "datasets": datasets,
            "config_path": path,
        }
    )


def with_overrides(spec, overrides: dict[str, object]):
    """The dataset spec with "section.field" values replaced (`--set` of the
    command line), validated as if they had been written in diffmine.yaml."""
    updates: dict[str, dict] = {}
    for dotted, value in overrides.items():
        section, _, field = dotted.partition(".")
        if not field or not hasattr(spec, section) or not hasattr(getattr(spec, section), "model_dump"):
            raise ValueError(f"--set {dotted}: expected SECTION.FIELD with SECTION one of options, training, typicality, patches, features, clusters")
        updates.setdefault(section, getattr(spec, section).model_dump(exclude_unset=section == "options"))[field] = value
    raw = {**spec.model_dump(exclude_unset=True), **updates}
    raw.pop("path", None)
    if hasattr(spec, "path"):
        raw["path"] = spec.path
    return parse_config({"datasets": [raw]}, f"--set on dataset {spec.name!r}").datasets[0]
