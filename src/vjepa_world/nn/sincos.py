"""Fixed 3D sine-cosine position embeddings, added to tokens (V-JEPA 1 and I-JEPA's predictor).

V-JEPA 2 gives positions through RoPE alone. Its predictor's mask tokens are one learned vector, so
at initialisation every masked position receives the same input and, while attention is still
near uniform, the same prediction; an added embedding makes each position's input distinct from
the first step.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sincos_embedding(t: Tensor, h: Tensor, w: Tensor, dim: int) -> Tensor:
    """Integer positions `(...)` on each axis -> embeddings `(..., dim)`.

    Each axis gets a segment of s = 2 * (dim // 6) dims, [time | height | width], the rest zeros;
    within a segment, the first s/2 dims are sin(pos * omega_j) and the last s/2 cos(pos * omega_j),
    omega_j = 10000^(-j / (s/2)), j = 0..s/2-1.
    """
    half = dim // 6
    if half < 1:
        raise ValueError(f"a 3D sine-cosine embedding needs dim >= 6, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float32, device=t.device) / half)  # (s/2,)
    segments = []
    for position in (t, h, w):
        angles = position.to(torch.float32)[..., None] * omega  # (..., s/2)
        segments += [angles.sin(), angles.cos()]
    segments.append(torch.zeros(*t.shape, dim - 6 * half, device=t.device))
    return torch.cat(segments, dim=-1)
