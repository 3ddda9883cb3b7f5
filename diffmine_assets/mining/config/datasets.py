"""The kinds of dataset `diffmine.yaml` can declare: where the images and
labels come from (a folder per label, a manifest, the built-in generator, the
paper's collections in their own formats) and the options of each kind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from .options import (
    SD_TYPICALITY,
    ClusterOptions,
    CorrespondenceOptions,
    FeatureOptions,
    PatchOptions,
    TrainingOptions,
    TranslationOptions,
    TypicalityOptions,
    _Strict,
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class IngestOptions(_Strict):
    """Options every kind of dataset shares: what counts as a usable image."""

    min_side: int = Field(16, ge=1, description="images with a shorter side are skipped")
    max_pixels: int = Field(
        50_000_000, ge=1, description="images with more pixels are skipped (decompression bombs)"
    )
    val_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of each label held out as split='val'"
    )
    resolution: int = Field(32, ge=8, le=1024, description="side, in pixels, the model sees")
    copy_images: bool = Field(False, description="copy each kept image into the lake (by content hash) and read it from there: "
                              "for collections on a disk that will not stay mounted; by default images are read where they lie")


# What each built-in preset changes from the fields' defaults, when the
# configuration does not set the field itself.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "planted": {},
    "photo-shapes": {"images_per_label": 200, "image_size": 48},
}


class BuiltinOptions(IngestOptions):
    preset: Literal["planted", "photo-shapes"] = Field(
        "planted",
        description="planted: flat shapes, colours and textures on tinted gradients, 4 labels; "
        "photo-shapes: real photographs with one small object whose shape is the label, 10 labels",
    )
    seed: int = 0
    images_per_label: int = Field(64, ge=2, le=100_000)
    image_size: int = Field(64, ge=32, le=1024, description="side of the generated images")
    element_share: float = Field(
        0.75, gt=0.0, le=1.0, description="share of a label's images holding each of its elements (planted)"
    )
    distractor_share: float = Field(0.5, ge=0.0, le=1.0, description="share of images holding each distractor (planted)")

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in PRESET_DEFAULTS:
            return {**PRESET_DEFAULTS[data["preset"]], **data}
        return data

    @model_validator(mode="after")
    def _preset_fields(self) -> "BuiltinOptions":
        if self.preset == "photo-shapes":
            planted_only = sorted({"element_share", "distractor_share"} & self.model_fields_set)
            if planted_only:
                raise ValueError(f"{planted_only} apply to the planted preset only (photo-shapes has one object per image)")
        return self


class LabelRule(_Strict):
    column: str
    rule: Literal["decade", "century", "value"]


class ManifestOptions(IngestOptions):
    path_column: str = "path"
    label_column: str | None = "label"
    label_from: LabelRule | None = None

    @model_validator(mode="after")
    def _one_label_source(self) -> "ManifestOptions":
        if self.label_from is not None and "label_column" in self.model_fields_set:
            raise ValueError("give either label_column or label_from, not both")
        return self


PROMPTS = {
    "cardb": ("A car from the {label}.", "A car."),
    "ftt": ("Portrait at the {label}.", "Portrait."),
    "g3": ("A street view photo in {label}.", "A street view photo."),
    "places365": ("Image of {label}.", "Image."),
    "chestxray14": ("Chest X-Ray with {label}.", "Chest X-Ray."),
}
DEFAULT_PROMPTS = ("An image of {label}.", "An image.")


class _DatasetBase(_Strict):
    name: str
    description: str = ""
    training: TrainingOptions = TrainingOptions()
    typicality: TypicalityOptions = TypicalityOptions()
    patches: PatchOptions = PatchOptions()
    features: FeatureOptions = FeatureOptions()
    clusters: ClusterOptions = ClusterOptions()
    translation: TranslationOptions = TranslationOptions()
    baseline: CorrespondenceOptions = CorrespondenceOptions()

    @model_validator(mode="before")
    @classmethod
    def _backend_typicality(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        training, typicality = data.get("training") or {}, data.get("typicality") or {}
        backend = training.get("backend") if isinstance(training, dict) else getattr(training, "backend", None)
        if backend != "stable-diffusion":
            return data
        if isinstance(typicality, dict):
            return {**data, "typicality": {**SD_TYPICALITY, **typicality}}
        unset = {k: v for k, v in SD_TYPICALITY.items() if k not in typicality.model_fields_set}
        return {**data, "typicality": typicality.model_copy(update=unset)} if unset else data

    @model_validator(mode="after")
    def _prompts(self) -> "_DatasetBase":
        t = self.training
        if t.backend == "stable-diffusion" and (t.prompt_template is None or t.null_prompt is None):
            template, null = PROMPTS.get(getattr(self, "kind", ""), DEFAULT_PROMPTS)
            filled = t.model_copy(update={"prompt_template": t.prompt_template or template, "null_prompt": t.null_prompt or null})
            object.__setattr__(self, "training", filled)  # frozen: the defaults are filled once, at validation
        return self

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(
                f"dataset name {v!r} must be lowercase letters, digits, '_' or '-' "
                "(it is a partition key and a folder name)"
            )
        return v


class BuiltinDataset(_DatasetBase):
    kind: Literal["builtin"]
    options: BuiltinOptions = BuiltinOptions()


class FolderDataset(_DatasetBase):
    kind: Literal["folder"]
    path: Path
    boxes: Path | None = Field(None, description="ground truth: a CSV or Parquet file of boxes (file, label, x, y, w, h in the original image's pixels)")
    options: IngestOptions = IngestOptions()


class ManifestDataset(_DatasetBase):
    kind: Literal["manifest"]
    path: Path
    boxes: Path | None = Field(None, description="ground truth: a CSV or Parquet file of boxes (file, label, x, y, w, h in the original image's pixels)")
    options: ManifestOptions = ManifestOptions()


# The paper's collections, each read in its own published format (METHOD.md section 8).

class CarDBOptions(IngestOptions):
    metadata: str = Field("metadata.json", description="JSON file (relative to path) with a year per image: a list of records or a mapping by file name")
    rule: Literal["decade", "century"] = Field("decade", description="label = decade (1957 -> 1950s) or century of the year")


class CarDBDataset(_DatasetBase):
    kind: Literal["cardb"]
    path: Path
    options: CarDBOptions = CarDBOptions()


class FTTDataset(_DatasetBase):
    kind: Literal["ftt"]
    path: Path
    options: IngestOptions = IngestOptions()


class G3Options(IngestOptions):
    label_pattern: str = Field(
        r"^(?P<label>.*?[^\d_\- .])[_\- .]+\d",
        description="regular expression over the file name (no extension) whose group 'label' is the country: by default "
        "everything before the first run of separators followed by a digit (United_Kingdom_51.5_-0.1_0003 -> United Kingdom)",
    )
    separators_to_spaces: bool = Field(True, description="write '_' in the label as a space")

    @field_validator("label_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            compiled = re.compile(v)
        except re.error as exc:
            raise ValueError(f"label_pattern is not a regular expression: {exc}") from None
        if "label" not in compiled.groupindex:
            raise ValueError("label_pattern needs a named group (?P<label>...)")
        return v


class G3Dataset(_DatasetBase):
    kind: Literal["g3"]
    path: Path
    options: G3Options = G3Options()


class Places365Options(IngestOptions):
    categories_file: str = "categories_places365.txt"
    split_file: str = Field("places365_val.txt", description="image list with category ids (places365_val.txt, places365_train_standard.txt ...)")
    images_dir: str | None = Field(None, description="folder of the split's images, relative to path; default: val_256, val_large or path itself")
    categories: list[str] | None = Field(None, description="keep only these categories (names as in the categories file, with or without /a/)")


class Places365Dataset(_DatasetBase):
    kind: Literal["places365"]
    path: Path
    options: Places365Options = Places365Options()


class ChestXray14Options(IngestOptions):
    metadata: str = Field("Data_Entry_2017.csv", description="per-image findings ('Image Index', 'Finding Labels' joined by '|')")
    boxes_file: str | None = Field("BBox_List_2017.csv", description="the findings' boxes; null: no ground truth (a missing file is no ground truth too)")
    findings: list[str] | None = Field(None, description="keep only these findings (default: all, 'No Finding' included)")


class ChestXray14Dataset(_DatasetBase):
    kind: Literal["chestxray14"]
    path: Path
    options: ChestXray14Options = ChestXray14Options()


DatasetSpec = Annotated[
    Union[BuiltinDataset, FolderDataset, ManifestDataset, CarDBDataset, FTTDataset, G3Dataset, Places365Dataset, ChestXray14Dataset],
    Field(discriminator="kind"),
]
KIND_MODELS = {
    "builtin": BuiltinDataset, "folder": FolderDataset, "manifest": ManifestDataset, "cardb": CarDBDataset,
    "ftt": FTTDataset, "g3": G3Dataset, "places365": Places365Dataset, "chestxray14": ChestXray14Dataset,
}
KINDS = tuple(KIND_MODELS)
