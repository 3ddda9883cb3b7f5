"""The options of each stage of the method, as `diffmine.yaml` declares them
per dataset (METHOD.md's defaults, or what measured better on a CPU, each
field saying which). Every field that changes results is part of its
section's `version()`, the code version of the assets it drives (a field
added later is left out of it at the value that changes nothing, so adding
it leaves every stored result current: `NEUTRAL_WHEN_ADDED`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields that change how a run goes (logging, saving, batching) but not
    # what it computes: a change to them keeps results (and a saved training
    # state) valid.
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset()

    # Fields added after checkpoints were already made, with the value that
    # changes nothing: left out of the hash at that value, so adding an
    # option does not show every existing result stale.
    NEUTRAL_WHEN_ADDED: ClassVar[dict[str, Any]] = {}

    def result_options(self) -> dict:
        """The options that change results, as JSON-ready values."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in self.RUN_ONLY}

    def identity_options(self) -> dict:
        """The options that change results, as what was made before a field
        existed names them: a field of NEUTRAL_WHEN_ADDED at that value is left out."""
        return {k: v for k, v in self.result_options().items() if k not in self.NEUTRAL_WHEN_ADDED or v != self.NEUTRAL_WHEN_ADDED[k]}

    def version(self) -> str:
        """A short hash of the options that change results: the code version
        of the assets these options drive, so a change shows them stale."""
        text = json.dumps(self.identity_options(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_duration(value: Any) -> Any:
    """"90s", "10m", "1.5h" or a number of seconds, to seconds."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([-+]?\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*", value)
        if not m:
            raise ValueError(f"{value!r} is not a duration (examples: 90s, 10m, 1.5h)")
        return float(m.group(1)) * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)]
    return value


# What the stable-diffusion backend changes from the fields' defaults (which
# are the CPU model's, measured in docs/QUALITY.md) when the config does not
# set the field: the paper's finetuning. `conditioning` is not read by it
# (its label enters as a prompt): held at the tiny backend's former default
# so a Stable Diffusion checkpoint's options hash did not change when the
# tiny default did.
SD_DEFAULTS: dict[str, Any] = {"shift": 0.0, "epochs": 100.0, "learning_rate": 1e-5, "label_dropout": 0.05, "timesteps": "uniform", "loss_weighting": "none",
                               "batch_size": 32, "warmup_steps": 500, "conditioning": "class"}
# The same for typicality: the label matrix scores on the maps' draws, as
# every Stable Diffusion figure was measured (its own range was measured on
# the CPU model only).
SD_TYPICALITY: dict[str, Any] = {"matrix_t_min": None, "matrix_t_max": None}


class TrainingOptions(_Strict):
    """How the denoiser is trained (the `checkpoint` asset)."""

    # on_new_data and continue_steps act only when the data changes: changing
    # them leaves the current checkpoint as valid as it was.
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"save_every", "log_every", "diagnostic_every", "on_new_data", "continue_steps", "snapshots"})
    NEUTRAL_WHEN_ADDED: ClassVar[dict[str, Any]] = {"dropout": 0.0}

    # What a saved network is built with (its weights' shapes, or layers
    # that load with it): a continuation loads the previous checkpoint's
    # network, so when one of these changed it would silently keep the old.
    NETWORK: ClassVar[tuple[str, ...]] = ("backend", "model_path", "conditioning", "channels", "dropout", "patch", "lora_rank")
    # What a network field was before the stored options recorded it (an
    # older checkpoint's params lack it); channels and patch had other
    # values then, so a checkpoint without them counts as another network.
    NETWORK_BEFORE_RECORDED: ClassVar[dict[str, Any]] = {"backend": "tiny", "model_path": None, "conditioning": "class", "dropout": 0.0, "lora_rank": 0}

    def network_changes(self, before: dict) -> dict[str, tuple[Any, Any]]:
        """The network fields whose value differs from `before` (a checkpoint's
        stored options, JSON), as {field: (before, now)}."""
        now = self.model_dump(mode="json")
        was = {k: before.get(k, self.NETWORK_BEFORE_RECORDED.get(k, "not recorded")) for k in self.NETWORK}
        return {k: (was[k], now[k]) for k in self.NETWORK if was[k] != now[k]}

    backend: Literal["tiny", "stable-diffusion"] = Field(
        "tiny", description="tiny: a small UNet trained from scratch in pixel space (CPU); stable-diffusion: a local Stable Diffusion 1.x folder "
        "finetuned in latent space (a GPU; docs/STABLE_DIFFUSION.md)")
    model_path: Path | None = Field(None, description="stable-diffusion: the Stable Diffusion 1.x folder in the diffusers layout (never downloaded)")
    prompt_template: str | None = Field(None, description="stable-diffusion: the label's prompt, with {label}; default: the dataset kind's (METHOD.md section 1)")
    null_prompt: str | None = Field(None, description="stable-diffusion: the generic prompt of the null condition; default: the dataset kind's")
    lora_rank: int = Field(0, ge=0, le=1024, description="stable-diffusion: train LoRA adapters of this rank on the attention projections (0: the whole UNet)")
    gradient_checkpointing: bool = Field(True, description="stable-diffusion on a GPU: recompute activations in the backward pass (less memory, slower steps)")
    conditioning: Literal["class", "film", "cross-attention"] = Field(
        "film",
        description="tiny: how the label enters the network: a class embedding added to the time embedding (class), "
        "the same embedding scaling and shifting every feature map (film: top-1 hit rate +0.08 and pixel AP +0.03 over class on "
        "photo-shapes, 3 seeds, docs/QUALITY.md), or label tokens read by cross-attention",
    )
    channels: tuple[int, ...] = Field((64, 64, 64), min_length=2, max_length=5, description="channels of each resolution level of the UNet")
    dropout: float = Field(0.0, ge=0, lt=1, description="tiny: dropout inside every residual block of the UNet (diffusers' own), "
                           "a regulariser against memorising a small collection, off by default (docs/QUALITY.md, \"Dropout\")")
    patch: Literal[1, 2, 4] = Field(2, description="pixels per side of the cells the network sees (space-to-depth): 2 makes a 32 px model as cheap as a 16 px one, without losing a pixel")
    steps: int | None = Field(None, ge=1, le=10_000_000, description="optimizer steps: fixes the length (null: from epochs)")
    epochs: float | None = Field(None, gt=0, le=100_000, description="passes over the training images, when steps is null: fixes the length "
                                 "(both null: the length follows the held-out evidence, see patience)")
    time_budget: float | None = Field(None, gt=0, description="seconds (or 90s, 10m, 1.5h) the training may take: fewer steps if the steps or epochs would take longer; "
                                      "with neither, the ceiling of the evidence rule (default: what run_target leaves)")
    run_target: float = Field(900.0, gt=0, description="with neither steps, epochs nor time_budget: the time (15m) the dataset's whole run should take on this machine; "
                              "training gets what the run estimate leaves after the other stages")
    checks: int = Field(20, ge=2, le=1000, description="at most this many held-out checks over the training's ceiling (quick accuracy and label gain of the "
                        "averaged weights): the curve the checkpoint's metadata and the report draw; fewer where they would take more than a tenth of the ceiling")
    patience: int | None = Field(None, ge=1, description="stop early: checks in a row with neither a higher held-out accuracy nor a label gain higher by more than its "
                                 "standard error, the best check's weights published (null: train to the ceiling; see training/stopping.py for why it is off)")
    min_share: float = Field(0.75, ge=0, le=1, description="with patience: share of the ceiling trained before the evidence may stop training")
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
    shift: Annotated[float, Field(ge=0, lt=0.5)] | Literal["auto"] = Field(
        "auto", description="random translations up to this share of the side (reflected borders); auto: 0.1 where the run makes at least 200 "
        "passes over its training images, where a small collection memorises them, else none (training/augmentation.py)")
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

    @field_validator("time_budget", "run_target", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v)

    @property
    def by_evidence(self) -> bool:
        """Whether time sets the length (a ceiling, held-out checks along
        it): neither steps nor epochs fix it."""
        return self.steps is None and self.epochs is None

    @property
    def stops_early(self) -> bool:
        """Whether the held-out evidence may stop the run before its ceiling."""
        return self.by_evidence and self.patience is not None

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
        if self.backend == "stable-diffusion" and self.dropout:
            raise ValueError("dropout is an option of the tiny backend; Stable Diffusion is finetuned with the paper's recipe (no dropout)")
        if self.prompt_template is not None and "{label}" not in self.prompt_template:
            raise ValueError(f"prompt_template {self.prompt_template!r} has no {{label}}")
        return self


class TypicalityOptions(_Strict):
    """How typicality is estimated (METHOD.md section 2)."""

    # the noise draws do not depend on the batch: only rounding does
    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"batch_size"})
    # null: the matrix on the maps' draws, as every result before the fields existed
    NEUTRAL_WHEN_ADDED: ClassVar[dict[str, Any]] = {"matrix_t_min": None, "matrix_t_max": None}

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
        "held-out", description="which images are also scored under every label (image-level, adaptive; shares the maps' null and own-label passes "
        "where matrix_t_min is null, else adds its own two): "
        "all, the held-out (split = 'val') images only, or none (true/false mean all/none)"
    )
    matrix_samples: int = Field(8, ge=1, description="samples every label of the matrix gets first (rounded up to whole replicates)")
    matrix_finalists: int = Field(3, ge=1, description="labels per image that then get all n_samples; the prediction is the best of them")
    # A classification compares labels with each other; the maps compare a
    # label with none. On the CPU model the small elements' shapes are told
    # apart at lower noise than the maps need (docs/QUALITY.md, "The label
    # matrix's own timesteps").
    matrix_t_min: float | None = Field(0.05, ge=0, lt=1, description="label matrix: lowest timestep, as a fraction of T (null: the maps' range and draws)")
    matrix_t_max: float | None = Field(0.3, gt=0, le=1, description="label matrix: highest timestep, as a fraction of T (null: the maps' range and draws)")

    @property
    def matrix_range(self) -> tuple[float, float] | None:
        """The label matrix's own timestep range, or None where it scores on the maps' draws."""
        if self.matrix_t_min is None or (self.matrix_t_min, self.matrix_t_max) == (self.t_min, self.t_max):
            return None
        return (self.matrix_t_min, self.matrix_t_max)

    @field_validator("label_matrix", mode="before")
    @classmethod
    def _matrix_bool(cls, v: Any) -> Any:
        return {True: "all", False: "none"}.get(v, v) if isinstance(v, bool) else v

    @model_validator(mode="after")
    def _consistent(self) -> "TypicalityOptions":
        if self.t_max <= self.t_min:
            raise ValueError(f"t_max ({self.t_max}) must be above t_min ({self.t_min})")
        if (self.matrix_t_min is None) != (self.matrix_t_max is None):
            raise ValueError("matrix_t_min and matrix_t_max are set together (both null: the label matrix uses the maps' range)")
        if self.matrix_t_min is not None and self.matrix_t_max <= self.matrix_t_min:
            raise ValueError(f"matrix_t_max ({self.matrix_t_max}) must be above matrix_t_min ({self.matrix_t_min})")
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
    classifier-free guidance, confined to the edit mask of each (image,
    target) (DiffEdit, Couairon et al. 2023), or over the whole image with
    Plug-and-Play injection (Tumanyan et al. 2023). The papers' defaults
    (50 steps, guidance 7.5; PnP's injection for 80 % and 50 % of the steps;
    DiffEdit's mask at half the schedule) are the starting point; the
    defaults are what measured better for the small UNet
    (docs/TRANSLATION.md)."""

    RUN_ONLY: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    images: int = Field(8, ge=1, description="the source label's most typical images translated into every other label")
    max_translations: int = Field(32, ge=1, description="at most this many translations per source label (images x other labels): with many labels, "
                                  "fewer of its most typical images (never under 2), so their cost grows with the labels rather than their square")
    method: Literal["masked", "masked-pnp", "pnp", "regenerate"] = Field(
        "masked", description="masked: regenerated only where the edit mask (where the source label denoises better than the target) says, the source's "
        "inverted latents elsewhere (DiffEdit); masked-pnp: the same with Plug-and-Play injection inside the mask; pnp: feature and "
        "self-attention injection over the whole image; regenerate: plain inversion and regeneration (the baseline)")
    steps: int = Field(25, ge=2, le=1000, description="DDIM steps over the whole schedule (the PnP paper: 50)")
    strength: float = Field(0.8, gt=0, le=1, description="share of the noise schedule inverted and regenerated (1: from pure noise, as the PnP paper)")
    guidance: float = Field(4.0, ge=1, description="classifier-free guidance scale of the regeneration (the PnP paper: 7.5)")
    invert_with: Literal["null", "source"] = Field("null", description="condition of the inversion and of the source pass: null (PnP) or the source label")
    feature_injection: float = Field(0.5, ge=0, le=1, description="share of the regeneration steps (from the noisiest) whose residual features come from the source pass (the PnP paper: 0.8)")
    attention_injection: float = Field(0.5, ge=0, le=1, description="share of the steps whose decoder self-attention queries and keys come from the source pass")
    feature_block: int = Field(1, ge=0, description="up-sampling block whose last residual block's output is injected")
    precision: Literal["auto", "float32", "bfloat16"] = Field("float32", description="network precision (inversion is exact only in float32)")
    batch_size: int = Field(48, ge=3, description="network evaluations per forward pass")
    mask_draws: int = Field(10, ge=1, description="masked: noise draws the edit mask is averaged over (DiffEdit: 10)")
    mask_strength: float = Field(0.2, gt=0, lt=1, description="masked: noise level of those draws, a share of the schedule (DiffEdit: 0.5, "
                                 "where the small UNet's difference map no longer tells the element from the background)")
    mask_smooth: float = Field(1.0, ge=0, description="masked: Gaussian smoothing of the difference map before the threshold, in model cells (sigma)")
    mask_threshold: float = Field(1.5, gt=0, description="masked: a cell is edited where its smoothed map exceeds this multiple of the "
                                  "map's mean (DiffEdit's clamp at 3x the mean, then 0.5: 1.5), or joins such a cell above mask_grow")
    mask_grow: float | None = Field(1.0, gt=0, description="masked: hysteresis (Canny's): cells above this lower multiple of the mean "
                                    "join the mask where connected to a cell above mask_threshold, so an element whose core passes the threshold "
                                    "is taken whole (docs/TRANSLATION.md, the third round); none, or not below mask_threshold: off")
    mask_signal: Literal["difference", "source"] = Field("source", description="masked: what the mask follows: where the noise "
        "predictions under source and target differ (difference, DiffEdit's), or where the source label denoises better than the "
        "target (source: the source's typicality against the target, signed), so the target's element is drawn where the source's was")
    mask_dilate: int = Field(1, ge=0, description="masked: model cells the thresholded mask is grown by on every side, so a target element "
                             "larger than the source's has room")
    keep_outside: Literal["source", "layout"] = Field("layout", description="masked: outside the mask, the source exactly (source), or the "
                                                      "source shifted per channel by the mean change the regeneration made there, so a label-wide "
                                                      "tint passes and the layout stays (layout)")
    seed: int = Field(0, description="masked: seed of the mask's noise draws (inversion and regeneration draw none)")

    def images_for(self, labels: int) -> int:
        """Source images per label translated, for a model of `labels` labels."""
        return min(self.images, max(2, self.max_translations // max(labels - 1, 1)))

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
