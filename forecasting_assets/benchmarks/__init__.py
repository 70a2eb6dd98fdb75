"""Benchmarks that run the project's own asset graph and print numbers (never timed tests)."""
