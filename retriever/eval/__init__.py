"""Measuring retrieval: datasets, indexing them through ingestion, the harness, metrics.

Run by `lectern eval retrieval`; the metrics are the one implementation training uses
too. Serving never imports this package.
"""
