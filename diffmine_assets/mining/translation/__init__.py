"""Translating images across labels (METHOD.md section 5): DDIM inversion and
Plug-and-Play regeneration (inversion.py), the translations as tables
(tables.py), and the same element followed across labels (parallel.py)."""
