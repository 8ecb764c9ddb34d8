"""Predictions from a Fit: linear predictors, new-data predictions, predictive checks and the pointwise log-likelihood."""
