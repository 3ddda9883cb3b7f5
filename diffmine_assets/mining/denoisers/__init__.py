"""Denoisers: one interface (base.Denoiser), several backends (registry.py).

Typicality, features and translation are written against the interface; a
backend says how images enter model space, how noise is added (a diffusers
scheduler) and how the network is conditioned on a label.
"""
