"""vjepa_world: V-JEPA 2 as a world model."""

from .config import AC_PRESETS, PRESETS, ACPredictorConfig, EncoderConfig, PredictorConfig, get_preset
from .nn import ActionConditionedPredictor, MaskedPredictor, VideoEncoder

__version__ = "0.1.0"

__all__ = [
    "AC_PRESETS",
    "PRESETS",
    "ACPredictorConfig",
    "ActionConditionedPredictor",
    "EncoderConfig",
    "MaskedPredictor",
    "PredictorConfig",
    "VideoEncoder",
    "get_preset",
]
