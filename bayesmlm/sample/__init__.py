"""Stage 4, sample: NUTS settings, running the sampler, diagnostics (R-hat, ESS, divergences)."""
