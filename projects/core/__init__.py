"""What every project shares: paths, params, datasets, validation, tracking and the registry."""
