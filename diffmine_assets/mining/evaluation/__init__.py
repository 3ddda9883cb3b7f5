"""The evaluation: quality figures (metrics.py, localisation.py, translations.py)
of the stored results (figures.py) and of a control scored the same way
(controls.py, scoring.py), the goals (goals.py) and the asset checks (checks.py)."""
