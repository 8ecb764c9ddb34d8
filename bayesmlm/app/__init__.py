"""The application layer: run configs (YAML) and the command line."""
