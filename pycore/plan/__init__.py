"""Searches over the estimators: largest batch and sequence, fewest GPUs, layouts, cheapest fit, sweeps."""
