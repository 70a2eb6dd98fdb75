"""Per-series features: a curated tsfresh feature set and the Syntetos–Boylan demand classes.

Kept import-light: tsfresh is imported inside the functions that use it.
"""
