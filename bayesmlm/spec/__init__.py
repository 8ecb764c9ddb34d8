"""Stage 1, spec: what the user wrote (a mixed formula or level equations), parsed and checked into a ModelSpec. No data, no PyMC."""
