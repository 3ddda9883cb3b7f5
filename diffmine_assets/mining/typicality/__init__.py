"""Typicality (METHOD.md section 2): the estimator (estimator.py), the label
matrix (label_matrix.py), their tables (tables.py), and the one sequence
every caller uses (score.py)."""
