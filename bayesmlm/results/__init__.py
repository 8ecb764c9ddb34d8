"""Stage 5, results: the Fit over the posterior DataTree, its tables, and saving and loading it."""
