"""Stage 2, design: data checks, design matrices (X, Z, group indices), new-data evaluation, the level structure, priors and equations. No PyMC."""
