"""The audio modality plugin (registered through the polydiff entry-point group)."""
