"""How each model is measured: feature extraction, probes, future prediction, planning."""

from .extract import ExtractResult, extract_features

__all__ = ["ExtractResult", "extract_features"]
