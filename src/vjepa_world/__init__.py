"""vjepa_world: V-JEPA 2 as a world model."""

from .config import PRESETS, EncoderConfig, PredictorConfig, get_preset
from .nn import MaskedPredictor, VideoEncoder

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "EncoderConfig",
    "MaskedPredictor",
    "PredictorConfig",
    "VideoEncoder",
    "get_preset",
]
