"""Thin Dagster assets: read config and inputs, call mining/, return tables."""
