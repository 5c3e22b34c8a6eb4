"""Training data preparation: caption reading and image quality filtering."""
