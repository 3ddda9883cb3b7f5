"""The report: pictures (pictures.py, visuals.py) and the one HTML page per
dataset (page.py)."""
