"""The image modality plugin (registered through the polydiff entry-point group)."""
