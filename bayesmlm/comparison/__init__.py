"""Comparing fits: the frequentist fit beside the posterior, pooling, PSIS-LOO."""
