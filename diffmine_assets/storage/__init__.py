"""The lake (Parquet files per partition) and the DuckDB catalog over it."""
