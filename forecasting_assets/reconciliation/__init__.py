"""Coherent forecasts across the hierarchy with hierarchicalforecast."""
