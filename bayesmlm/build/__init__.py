"""Stage 3, build: the PyMC model. The prior distributions, the LKJ/SD helpers and the full model (random effects sampled, centred or not)."""
