"""Hierarchy aggregation: the summing structure, its tags and the series of every level."""
