"""A float64 recomputation of the V-JEPA 2 encoder written from the spec, loop by loop.

Slow and literal on purpose: it is the second opinion for inputs transformers cannot check
(non-square frames, encoding a subset of tokens, head dims whose RoPE leaves a tail).
"""

import math

import torch


def reference_positions(n, height, width):
    """(t, h, w) of flat token index n on a (height x width) grid, raster order, w fastest."""
    return n // (height * width), (n % (height * width)) // width, n % width


def reference_rope(x, positions):
    """x (N, head_dim) float64; positions list of (t, h, w). Element k of a segment uses
    frequency k mod s/2; pairs (2i, 2i+1) are rotated: r[2i] = -x[2i+1], r[2i+1] = x[2i]."""
    n_tokens, head_dim = x.shape
    s = 2 * ((head_dim // 3) // 2)
    out = x.clone()
    for n in range(n_tokens):
        for segment, pos in enumerate(positions[n]):
            for k in range(s):
                j = segment * s + k
                freq = 1.0 / 10000 ** ((k % (s // 2)) / (s // 2))
                partner = -x[n, j + 1] if k % 2 == 0 else x[n, j - 1]
                out[n, j] = x[n, j] * math.cos(pos * freq) + partner * math.sin(pos * freq)
    return out


def _layer_norm(x, norm):
    return torch.nn.functional.layer_norm(x, x.shape[-1:], norm.weight.double(), norm.bias.double(), norm.eps)


def reference_encoder(encoder, video, context_idx=None):
    """Float64 forward of a VideoEncoder's weights on one clip (3, T, H, W) -> (n, D)."""
    c = encoder.config
    video = video.double()
    _, frames, height, width = video.shape
    grid_t, grid_h, grid_w = frames // c.tubelet_size, height // c.patch_size, width // c.patch_size
    conv = encoder.patch_embed.proj
    tokens = []
    for t in range(grid_t):
        for h in range(grid_h):
            for w in range(grid_w):
                cube = video[
                    :,
                    t * c.tubelet_size : (t + 1) * c.tubelet_size,
                    h * c.patch_size : (h + 1) * c.patch_size,
                    w * c.patch_size : (w + 1) * c.patch_size,
                ]
                tokens.append((conv.weight.double() * cube).sum(dim=(1, 2, 3, 4)) + conv.bias.double())
    x = torch.stack(tokens)
    indices = list(range(len(tokens))) if context_idx is None else [int(i) for i in context_idx]
    x = x[indices]
    positions = [reference_positions(n, grid_h, grid_w) for n in indices]
    heads, head_dim = c.num_heads, c.dim // c.num_heads
    for block in encoder.blocks:
        y = _layer_norm(x, block.norm1)
        qkv = y @ block.attn.qkv.weight.double().T + block.attn.qkv.bias.double()
        q, k, v = qkv.split(c.dim, dim=-1)
        outputs = []
        for head in range(heads):
            part = slice(head * head_dim, (head + 1) * head_dim)
            qh, kh = reference_rope(q[:, part], positions), reference_rope(k[:, part], positions)
            weights = torch.softmax(qh @ kh.T / math.sqrt(head_dim), dim=-1)
            outputs.append(weights @ v[:, part])
        x = x + torch.cat(outputs, dim=-1) @ block.attn.proj.weight.double().T + block.attn.proj.bias.double()
        y = _layer_norm(x, block.norm2)
        hidden = torch.nn.functional.gelu(y @ block.mlp.fc1.weight.double().T + block.mlp.fc1.bias.double())
        x = x + hidden @ block.mlp.fc2.weight.double().T + block.mlp.fc2.bias.double()
    return _layer_norm(x, encoder.norm)
