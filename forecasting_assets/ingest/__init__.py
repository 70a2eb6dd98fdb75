"""Ingestion: read a source folder (``sources``) and validate its rows (``validation``)."""
