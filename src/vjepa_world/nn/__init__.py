"""Building blocks: RoPE, attention, blocks, the encoder and the predictors."""

from .ac_predictor import ActionConditionedPredictor, KVCache
from .predictor import MaskedPredictor
from .vit import VideoEncoder, load_encoder

__all__ = ["ActionConditionedPredictor", "KVCache", "MaskedPredictor", "VideoEncoder", "load_encoder"]
