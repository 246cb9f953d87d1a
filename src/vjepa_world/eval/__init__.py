"""Evaluation: feature extraction (probes and future prediction come later)."""

from .extract import ExtractResult, extract_features

__all__ = ["ExtractResult", "extract_features"]
