"""Built-in modality plugins (image, video, audio, molecule, protein).

Each sub-package is a pluggy plugin registered through the ``polydiff`` entry-point group
in polydiff's ``pyproject.toml``, the same way a third-party plugin registers.
"""
