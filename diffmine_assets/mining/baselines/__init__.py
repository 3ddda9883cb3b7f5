"""Baselines the typicality method is compared against (METHOD.md section 7)."""
