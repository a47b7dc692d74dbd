"""Per-model image preprocessing, as TF-Slim's preprocessing styles."""
