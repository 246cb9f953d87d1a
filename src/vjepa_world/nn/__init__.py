"""Building blocks: RoPE, attention, blocks, the encoder and the predictors."""

from .predictor import MaskedPredictor
from .vit import VideoEncoder

__all__ = ["MaskedPredictor", "VideoEncoder"]
