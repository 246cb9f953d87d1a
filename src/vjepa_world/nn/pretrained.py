"""`from_pretrained` / `save_pretrained` on the models, delegating to `vjepa_world.checkpoints`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..checkpoints import load_pretrained, save_pretrained


class PretrainedMixin:
    """Gives a model class the two checkpoint methods of the public contract."""

    checkpoint_role: str  # "encoder" or "predictor": where this network goes in a checkpoint

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **overrides: Any):
        """Load an official V-JEPA 2 `.pt`, a Hugging Face VJEPA2 directory or one we saved.

        Keywords: `preset=` (a name from `vjepa_world.config.PRESETS`), `key=` (which network of
        an official file: "target_encoder" by default, or "encoder"), and any config field.
        """
        return load_pretrained(cls, source, **overrides)

    def save_pretrained(self, directory: str | os.PathLike, **others: Any) -> Path:
        """Write `config.json` + `model.safetensors` (Hugging Face VJEPA2 layout), atomically, and
        return the directory. Pass the other network (`predictor=` or `encoder=`) to save both."""
        return save_pretrained(directory, **{self.checkpoint_role: self}, **others)
