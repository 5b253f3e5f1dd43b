"""The video modality plugin (registered through the polydiff entry-point group)."""
