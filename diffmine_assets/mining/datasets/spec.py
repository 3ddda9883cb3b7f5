"""The declaration of datasets (``diffmine.yaml``), validated before any work.

A typo'd field or an unknown kind fails with the file, the field's path and,
where one is close, the field that was probably meant.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_ENV = "DIFFMINE_CONFIG"
CONFIG_NAME = "diffmine.yaml"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """The configuration file is wrong; the message says where and how."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields that change how a run goes (logging, saving, batching) but not
    # what it computes: a change to them keeps results (and a saved training
    # state) valid.
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset()

    def result_options(self) -> dict:
        """The options that change results, as JSON-ready values."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RUN_ONLY}

    def version(self) -> str:
        """A short hash of the options that change results: the code version
        of the assets these options drive, so a change shows them stale."""
        text = json.dumps(self.result_options(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


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


def parse_duration(value: Any) -> Any:
    """"90s", "10m", "1.5h" or a number of seconds, to seconds."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*", value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (examples: 90s, 10m, 1.5h)")
        return float(m.group(1)) * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return value


# What the stable-diffusion backend changes from the fields' defaults (which
# are the CPU model's, measured in docs/QUALITY.md) when the config does not
# set the field: the paper's finetuning.
SD_DEFAULTS: dict[str, Any] = {"epochs": 100.0, "learning_rate": 1e-5, "label_dropout": 0.05, "timesteps": "uniform", "loss_weighting": "none",
                               "batch_size": 32, "warmup_steps": 500}


class TrainingOptions(_Strict):
    """How the denoiser is trained (the `checkpoint` asset)."""

    # on_new_data and continue_steps act only when the data changes: changing
    # them leaves the current checkpoint as valid as it was.
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"save_every", "log_every", "diagnostic_every", "on_new_data", "continue_steps", "snapshots"})

    backend: Literal["tiny", "stable-diffusion"] = Field(
        "tiny", description="tiny: a small UNet trained from scratch in pixel space (CPU); stable-diffusion: a local Stable Diffusion 1.x folder "
        "finetuned in latent space (a GPU; docs/STABLE_DIFFUSION.md)")
    model_path: Path | None = Field(None, description="stable-diffusion: the Stable Diffusion 1.x folder in the diffusers layout (never downloaded)")
    prompt_template: str | None = Field(None, description="stable-diffusion: the label's prompt, with {label}; default: the dataset kind's (METHOD.md section 1)")
    null_prompt: str | None = Field(None, description="stable-diffusion: the generic prompt of the null condition; default: the dataset kind's")
    lora_rank: int = Field(0, ge=0, le=1024, description="stable-diffusion: train LoRA adapters of this rank on the attention projections (0: the whole UNet)")
    gradient_checkpointing: bool = Field(True, description="stable-diffusion on a GPU: recompute activations in the backward pass (less memory, slower steps)")
    conditioning: Literal["class", "film", "cross-attention"] = Field(
        "class",
        description="how the label enters the network: a class embedding added to the time embedding (class), "
        "the same embedding scaling and shifting every feature map (film), or label tokens read by cross-attention",
    )
    channels: tuple[int, ...] = Field((64, 64, 64), min_length=2, max_length=5, description="channels of each resolution level of the UNet")
    patch: Literal[1, 2, 4] = Field(2, description="pixels per side of the cells the network sees (space-to-depth): 2 makes a 32 px model as cheap as a 16 px one, without losing a pixel")
    steps: int | None = Field(None, ge=1, le=10_000_000, description="optimizer steps; null: from epochs")
    epochs: float = Field(60.0, gt=0, le=100_000, description="passes over the training images, when steps is null")
    time_budget: float | None = Field(None, gt=0, description="seconds (or 90s, 10m, 1.5h) the training may take: fewer steps if the steps or epochs would take longer")
    batch_size: int = Field(64, ge=1, le=4096)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.01, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this (the paper: 1.0)")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="exponential moving average of the weights (0: off); the checkpoint holds the average")
    label_dropout: float = Field(0.1, ge=0, lt=1, description="share of samples trained with the null condition")
    timesteps: Literal["uniform", "focus"] = Field(
        "focus", description="training timesteps: uniform over [0, T), or half of them inside focus_range (where labels help)"
    )
    focus_range: tuple[float, float] = Field((0.05, 0.5), description="fractions of T that timesteps: focus draws half of the samples from")
    loss_weighting: Literal["none", "min-snr"] = Field(
        "min-snr", description="min-snr: weight each timestep's loss by min(SNR, gamma) / SNR (Hang et al. 2023), so the nearly clean timesteps, "
        "where a photograph's fine texture dominates the loss and no label helps, stop drowning the rest"
    )
    min_snr_gamma: float = Field(5.0, gt=0)
    flip: bool = Field(False, description="random horizontal flips")
    shift: float = Field(0.0, ge=0, lt=0.5, description="random translations up to this share of the side (reflected borders)")
    precision: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto: bfloat16 autocast where native")
    seed: int = 0
    save_every: int = Field(100, ge=1)
    log_every: int = Field(25, ge=1)
    diagnostic_every: int = Field(0, ge=0, description="steps between held-out label-gain diagnostics (0: at the end only)")
    snapshots: int = Field(5, ge=0, le=100, description="weights kept along training besides the untrained start (at 1/n, 2/n ... of the steps), "
                           "for `diffmine eval --curve`; 0: none")
    on_new_data: Literal["continue", "retrain"] = Field(
        "continue", description="when images or labels change: continue from the last checkpoint, or train from scratch"
    )
    continue_steps: int = Field(250, ge=1, description="steps of a continuation")

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v)

    @model_validator(mode="before")
    @classmethod
    def _backend_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("backend") == "stable-diffusion":
            # the paper's finetuning (METHOD.md section 1) where the config is silent; a whole-UNet snapshot is 3.4 GB, an adapter's a few MB
            return {**SD_DEFAULTS, "snapshots": 5 if data.get("lora_rank") else 0, **data}
        return data

    @model_validator(mode="after")
    def _backend_fields(self) -> "TrainingOptions":
        if self.backend == "stable-diffusion" and self.model_path is None:
            raise ValueError("backend stable-diffusion needs model_path: a local Stable Diffusion 1.x folder in the diffusers layout")
        if self.prompt_template is not None and "{label}" not in self.prompt_template:
            raise ValueError(f"prompt_template {self.prompt_template!r} has no {{label}}")
        return self


class TypicalityOptions(_Strict):
    """How typicality is estimated (METHOD.md section 2)."""

    # the noise draws do not depend on the batch: only rounding does
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    n_samples: int = Field(32, ge=2, le=100_000, description="(noise, t) pairs per image")
    t_min: float = Field(0.1, ge=0, lt=1)
    t_max: float = Field(0.5, gt=0, le=1)
    seed: int = 0
    sampling: Literal["importance-antithetic", "stratified-antithetic", "stratified", "iid"] = "importance-antithetic"
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="network precision; auto = bfloat16 where the CPU/GPU runs it natively, else float32; float16: a GPU's half precision (the paper's)"
    )
    groups: int = Field(8, ge=2, le=1024, description="independent replicates, for the standard error")
    batch_size: int = Field(32, ge=2, le=4096, description="network evaluations per forward pass (label and null each count)")
    label_matrix: Literal["all", "held-out", "none"] = Field(
        "held-out", description="which images are also scored under every label (image-level, adaptive; shares the null and own-label passes): "
        "all, the held-out (split = 'val') images only, or none (true/false mean all/none)"
    )
    matrix_samples: int = Field(8, ge=1, description="samples every label of the matrix gets first (rounded up to whole replicates)")
    matrix_finalists: int = Field(3, ge=1, description="labels per image that then get all n_samples; the prediction is the best of them")

    @field_validator("label_matrix", mode="before")
    @classmethod
    def _matrix_bool(cls, v: Any) -> Any:
        return {True: "all", False: "none"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _consistent(self) -> "TypicalityOptions":
        if self.t_max <= self.t_min:
            raise ValueError(f"t_max ({self.t_max}) must be above t_min ({self.t_min})")
        per_group = 2 if self.sampling.endswith("antithetic") else 1
        if self.n_samples % (self.groups * per_group):
            raise ValueError(f"n_samples ({self.n_samples}) must be a multiple of groups x {per_group} ({self.groups * per_group}) with sampling {self.sampling!r}")
        return self


class PatchOptions(_Strict):
    """How patches are chosen from typicality maps (METHOD.md section 3)."""

    window_px: int = Field(14, ge=1, description="window side, in pixels of the original image")
    stride_px: int = Field(2, ge=1)
    per_image: int = Field(5, ge=1, description="best non-overlapping windows kept per image")
    per_label: int = Field(1000, ge=1, description="top windows kept per label")
    seed: int = 0


class FeatureOptions(_Strict):
    """Diffusion features of patches (METHOD.md section 4)."""

    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    block: int = Field(1, ge=0, description="up-sampling block whose activations describe a patch")
    timestep: int = Field(25, ge=0, le=999, description="noise level of the features (the paper: 161 of 1000; see docs/PERFORMANCE.md)")
    seed: int = 0
    batch_size: int = Field(32, ge=1)
    selection: Literal["top", "all"] = Field("top", description="which patches get features: the top K, or also random and least typical")


class ClusterOptions(_Strict):
    """k-means over patch features (METHOD.md section 4)."""

    k: int = Field(32, ge=1, description="clusters per label (never more than there are patches)")
    seed: int = 0
    n_init: int = Field(10, ge=1)


class TranslationOptions(_Strict):
    """Translation across labels and parallel mining (METHOD.md section 5):
    DDIM inversion, then regeneration under the target label with
    classifier-free guidance and Plug-and-Play injection (Tumanyan et al.
    2023). The PnP paper's defaults (50 steps, guidance 7.5, features
    injected for 80 % and self-attention for 50 % of the steps) are the
    starting point; the defaults are what measured better for the small
    UNet (docs/TRANSLATION.md)."""

    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    images: int = Field(8, ge=1, description="the source label's most typical images translated into every other label")
    method: Literal["pnp", "regenerate"] = Field("pnp", description="pnp: with feature and self-attention injection; regenerate: plain inversion and regeneration (the baseline)")
    steps: int = Field(25, ge=2, le=1000, description="DDIM steps over the whole schedule (the PnP paper: 50)")
    strength: float = Field(0.8, gt=0, le=1, description="share of the noise schedule inverted and regenerated (1: from pure noise, as the PnP paper)")
    guidance: float = Field(3.0, ge=1, description="classifier-free guidance scale of the regeneration (the PnP paper: 7.5)")
    invert_with: Literal["null", "source"] = Field("null", description="condition of the inversion and of the source pass: null (PnP) or the source label")
    feature_injection: float = Field(0.5, ge=0, le=1, description="share of the regeneration steps (from the noisiest) whose residual features come from the source pass (the PnP paper: 0.8)")
    attention_injection: float = Field(0.5, ge=0, le=1, description="share of the steps whose decoder self-attention queries and keys come from the source pass")
    feature_block: int = Field(1, ge=0, description="up-sampling block whose last residual block's output is injected")
    precision: Literal["auto", "float32", "bfloat16"] = Field("float32", description="network precision (inversion is exact only in float32)")
    batch_size: int = Field(48, ge=3, description="network evaluations per forward pass")
    top: int = Field(200, ge=1, description="parallel mining: locations kept (best windows of the translated sets, by median typicality over labels)")
    k: int = Field(8, ge=1, description="parallel mining: clusters of the concatenated features")


class CorrespondenceOptions(_Strict):
    """The correspondence baseline (Doersch et al. 2012; METHOD.md section 7):
    HOG windows, nearest neighbours, SVM refinement."""

    window_px: list[int] | None = Field(None, description="window sides in original pixels (the scales); default: patches.window_px x 1 and x 1.5")
    cells: int = Field(4, ge=2, description="HOG cells per window side")
    cell_px: int = Field(4, ge=2, description="pixels per HOG cell after resizing a window to cells x cell_px")
    orientations: int = Field(9, ge=2)
    candidates: int = Field(1000, ge=1, description="random high-contrast windows of the label's images whose neighbours are searched")
    k: int = Field(20, ge=1, description="nearest neighbours per candidate (one per image at most), and detections per refinement round")
    detectors: int = Field(30, ge=1, description="candidates refined into SVM detectors")
    keep: int = Field(10, ge=1, description="purest detectors whose scores make the patches")
    rounds: int = Field(3, ge=1, description="refinement rounds (alternating halves of the label's images)")
    negatives: int = Field(2000, ge=1, description="negative windows per SVM (plus hard negatives each round)")
    C: float = Field(0.1, gt=0, description="SVM regularisation")
    max_negative_images: int = Field(0, ge=0, description="at most this many images of other labels (0: all)")
    seed: int = 0

    def for_window(self, window_px: int) -> "CorrespondenceOptions":
        return self if self.window_px else self.model_copy(update={"window_px": [window_px, round(window_px * 1.5)]})


# The paper's prompts (METHOD.md section 1): the label's prompt and the generic
# one of the null condition, by dataset kind.
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
