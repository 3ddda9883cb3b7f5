"""Label-keeping augmentation, and when `shift: auto` turns it on.

A small collection trained for hundreds of passes memorises its images: on
600 photo-shapes images (docs/QUALITY.md, "Memorisation") 2,957 steps of 64,
350 passes, left the held-out label gain at -2.83e-3; random shifts of up to
a tenth of the side took it to -0.21e-3 and pixel AP from 0.22 to 0.29
(flips as well: -0.13e-3 and 0.36). At 153 passes flips and shifts helped
less (pixel AP +0.05, top-1 -0.03), at 107 passes on 2,000 images they cost
a little, at 53 flips cost accuracy. AUTO_PASSES is not a swept optimum: it
leaves the built-in demo (120 passes; 150 when it was set) as it was, stays clear of the cost at
107 and below the 350 where shifts alone were measured. Flips stay the
user's choice: they do not keep every label (text, a direction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

AUTO_PASSES = 200.0
AUTO_SHIFT = 0.1


@dataclass(frozen=True)
class Augmentation:
    flip: bool
    shift: float
    why: str = ""

    def describe(self) -> str:
        parts = (["flips"] if self.flip else []) + ([f"shifts up to {self.shift:g} of the side"] if self.shift > 0 else [])
        return (" and ".join(parts) or "none") + (f" ({self.why})" if self.why else "")

    def as_dict(self) -> dict:
        return asdict(self)


def passes(steps: int, batch_size: int, n_train: int) -> float:
    return steps * batch_size / max(n_train, 1)


def augmentation_for(flip: bool, shift: float | str, steps: int | None, batch_size: int, n_train: int, ceiling: bool = False) -> Augmentation:
    """What a run of `steps` steps over `n_train` images augments with;
    `steps` None: not known yet (a time budget fixes it after the first
    steps), so `auto` waits, unaugmented. `ceiling`: the steps are a ceiling
    the evidence may stop before (said so)."""
    if shift != "auto":
        return Augmentation(flip, float(shift))
    if steps is None:
        return Augmentation(flip, 0.0, "shift auto: decided once the time budget fixes the steps")
    p = passes(steps, batch_size, n_train)
    on = p >= AUTO_PASSES
    of = " of the time ceiling" if ceiling else ""
    return Augmentation(flip, AUTO_SHIFT if on else 0.0, f"shift auto: {int(p)} passes{of} {'>=' if on else '<'} {AUTO_PASSES:g}")


def augment(x0: torch.Tensor, aug: Augmentation, g: torch.Generator) -> torch.Tensor:
    """Random flips and translations (borders reflected), so the model sees
    each object at other places and cannot tie a label to one image's
    pixels. Draws from `g` only what is on, so a run without augmentation
    draws as it always did."""
    if aug.flip:
        flip = torch.rand(len(x0), generator=g) < 0.5
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
    if aug.shift > 0:
        size = x0.shape[-1]
        s = max(1, int(round(aug.shift * size)))
        padded = torch.nn.functional.pad(x0, (s, s, s, s), mode="reflect")
        dy, dx = torch.randint(0, 2 * s + 1, (2, len(x0)), generator=g).tolist()
        x0 = torch.stack([padded[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(dy, dx))])
    return x0


def continued_shift(options, previous_steps: int, n_train: int) -> dict:
    """Options update of a continuation (`continue_steps` more steps from a
    checkpoint of `previous_steps`): with `shift: auto`, the shift decided on
    every step the checkpoint will then have made, as its control, trained
    from scratch for all of them, decides."""
    if options.shift != "auto":
        return {}
    return {"shift": augmentation_for(options.flip, "auto", previous_steps + options.continue_steps, options.batch_size, n_train).shift}
