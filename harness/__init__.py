"""Empirical scaling-law harness: train grids of small GPT-style models, fit scaling laws."""
