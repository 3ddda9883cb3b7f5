"""Denoisers: one interface (base.Denoiser), several backends.

Typicality, features and translation are written against the interface; a
backend says how images enter model space, how noise is added (a diffusers
scheduler) and how the network is conditioned on a label.
"""

from .base import Denoiser, load_denoiser, new_denoiser
from .tiny import TinyDenoiser

BACKENDS = {"tiny": TinyDenoiser}

__all__ = ["BACKENDS", "Denoiser", "TinyDenoiser", "load_denoiser", "new_denoiser"]
