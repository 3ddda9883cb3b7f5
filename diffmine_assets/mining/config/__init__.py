"""The configuration: what `diffmine.yaml` declares, validated (options.py:
each stage's options; datasets.py: the kinds of dataset; project.py: the
file as a whole)."""

from .datasets import (
    KINDS,
    BuiltinDataset,
    BuiltinOptions,
    DatasetSpec,
    FolderDataset,
    IngestOptions,
    LabelRule,
    ManifestDataset,
    ManifestOptions,
)
from .options import (
    ClusterOptions,
    CorrespondenceOptions,
    FeatureOptions,
    PatchOptions,
    TrainingOptions,
    TranslationOptions,
    TypicalityOptions,
    parse_duration,
)
from .project import LAKE_ENV, ConfigError, ProjectConfig, default_config_path, load_config, parse_config, with_overrides

__all__ = [
    "KINDS", "LAKE_ENV", "BuiltinDataset", "BuiltinOptions", "ClusterOptions", "ConfigError", "CorrespondenceOptions", "DatasetSpec",
    "FeatureOptions", "FolderDataset", "IngestOptions", "LabelRule", "ManifestDataset", "ManifestOptions", "PatchOptions", "ProjectConfig",
    "TrainingOptions", "TranslationOptions", "TypicalityOptions", "default_config_path", "load_config", "parse_config", "parse_duration",
    "with_overrides",
]
