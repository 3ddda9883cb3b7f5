"""Training the denoiser: the loop (loop.py), fitting and publishing a
dataset's checkpoint (checkpoints.py), whether it learnt the labels
(diagnostics.py), and how long a run will take (estimate.py)."""
