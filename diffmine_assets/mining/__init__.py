"""The science of diffmine. Nothing here imports Dagster: every piece is usable
and testable from plain Python."""
