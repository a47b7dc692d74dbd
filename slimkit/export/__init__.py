"""Export for serving: SavedModel (servers) and TFLite (phones)."""
