"""Where outputs go: atomic files per asset plus a DuckDB catalog of views over them."""
