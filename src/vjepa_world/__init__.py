"""vjepa_world: V-JEPA 2 as a world model."""

from .config import AC_PRESETS, PRESETS, ACPredictorConfig, EncoderConfig, PredictorConfig, get_preset
from .jepa import VJEPAConfig, VJEPAModel
from .nn import ActionConditionedPredictor, MaskedPredictor, VideoEncoder
from .world_model import ActionConditionedVJEPA, WorldModel

__version__ = "0.1.0"

__all__ = [
    "AC_PRESETS",
    "PRESETS",
    "ACPredictorConfig",
    "ActionConditionedPredictor",
    "ActionConditionedVJEPA",
    "EncoderConfig",
    "MaskedPredictor",
    "PredictorConfig",
    "VJEPAConfig",
    "VJEPAModel",
    "VideoEncoder",
    "WorldModel",
    "get_preset",
]
