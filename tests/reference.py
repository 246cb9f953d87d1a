"""A float64 recomputation of the V-JEPA 2 encoder written from the spec, loop by loop.

Slow and literal on purpose: it is the second opinion for inputs transformers cannot check
(non-square frames, encoding a subset of tokens, head dims whose RoPE leaves a tail).
"""

import functools
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


@functools.cache
def rope_matrix(position, head_dim):
    """The (head_dim, head_dim) float64 matrix R with R @ x = reference_rope(x) at `position`
    (t, h, w): the literal loop applied to the basis vectors."""
    basis = torch.eye(head_dim, dtype=torch.float64)
    return reference_rope(basis, [position] * head_dim).T


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
    x = reference_blocks(encoder.blocks, x, positions, c.num_heads)
    return _layer_norm(x, encoder.norm)


def _linear(x, layer):
    return x @ layer.weight.double().T + layer.bias.double()


def reference_blocks(blocks, x, positions, heads, may_attend=None):
    """Float64 pre-norm RoPE blocks on tokens x (n, D) at positions [(t, h, w)]; may_attend(i, j)
    says whether token i sees token j (None: all)."""
    dim = x.shape[-1]
    head_dim = dim // heads
    n = len(positions)
    blocked = torch.tensor(
        [[may_attend is not None and not may_attend(i, j) for j in range(n)] for i in range(n)]
    )
    for block in blocks:
        y = _layer_norm(x, block.norm1)
        q, k, v = _linear(y, block.attn.qkv).split(dim, dim=-1)
        rotations = torch.stack([rope_matrix(tuple(p), head_dim) for p in positions])  # (n, hd, hd)
        outputs = []
        for head in range(heads):
            part = slice(head * head_dim, (head + 1) * head_dim)
            qh = torch.einsum("nij,nj->ni", rotations, q[:, part])
            kh = torch.einsum("nij,nj->ni", rotations, k[:, part])
            scores = (qh @ kh.T / math.sqrt(head_dim)).masked_fill(blocked, -math.inf)
            outputs.append(torch.softmax(scores, dim=-1) @ v[:, part])
        x = x + _linear(torch.cat(outputs, dim=-1), block.attn.proj)
        y = _layer_norm(x, block.norm2)
        x = x + _linear(torch.nn.functional.gelu(_linear(y, block.mlp.fc1)), block.mlp.fc2)
    return x


def reference_ac_predictor(predictor, frames, actions, states, grid_hw):
    """Float64 V-JEPA 2-AC forward on one sequence: frames (T*N, D_enc), actions (T, A), states
    (T, S) or None -> (T*N, D_enc). Per step [action, state, frame tokens]; conditioning tokens
    sit at (t, 0, 0), which rotates the time segment only; step t sees steps <= t."""
    steps, per_step = len(actions), grid_hw[0] * grid_hw[1]
    tokens, positions, step_of, frame_rows = [], [], [], []
    for t in range(steps):
        conditions = [_linear(actions[t].double(), predictor.action_encoder)]
        if states is not None:
            conditions.append(_linear(states[t].double(), predictor.state_encoder))
        for token in conditions:
            tokens.append(token), positions.append((t, 0, 0)), step_of.append(t)
        for n in range(per_step):
            frame_rows.append(len(tokens))
            tokens.append(_linear(frames[t * per_step + n].double(), predictor.predictor_embed))
            positions.append((t, n // grid_hw[1], n % grid_hw[1])), step_of.append(t)
    x = reference_blocks(
        predictor.predictor_blocks,
        torch.stack(tokens),
        positions,
        predictor.config.num_heads,
        lambda i, j: step_of[j] <= step_of[i],
    )
    return _linear(_layer_norm(x[frame_rows], predictor.predictor_norm), predictor.predictor_proj)


def reference_sincos(position, dim):
    """Float64 3D sine-cosine embedding of one (t, h, w): per axis dim // 6 sines then as many
    cosines of pos * 10000^(-j / (dim // 6)), zeros after the three segments."""
    half = dim // 6
    values = []
    for pos in position:
        angles = [pos * 10000.0 ** (-j / half) for j in range(half)]
        values += [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
    return torch.tensor(values + [0.0] * (dim - 6 * half), dtype=torch.float64)


def reference_predictor(predictor, context, context_idx, target_idx, mask_index, grid_hw):
    """Float64 V-JEPA 2 pretraining predictor on one clip: context tokens (n_ctx, D_enc) at flat
    indices context_idx, targets at target_idx -> (n_tgt, D_enc). The context is embedded, the
    mask token sits at every target position (plus the sine-cosine embedding with
    `config.pos_embed`), and RoPE blocks run over the joint set; with `config.copy_last` each
    output adds the latest earlier context token at its place. Attention
    is not masked, so the sort by position upstream does is a no-op and is left out here."""
    c = predictor.config
    mask_token = predictor.mask_tokens[mask_index % len(predictor.mask_tokens)].double().reshape(1, -1)
    x = torch.cat([_linear(context, predictor.predictor_embed), mask_token.expand(len(target_idx), -1)])
    indices = [int(n) for n in context_idx] + [int(n) for n in target_idx]
    positions = [reference_positions(n, *grid_hw) for n in indices]
    if c.pos_embed:
        x = x + torch.stack([reference_sincos(position, c.dim) for position in positions])
    x = reference_blocks(predictor.predictor_blocks, x, positions, c.num_heads)
    out = _linear(_layer_norm(x[len(context_idx) :], predictor.predictor_norm), predictor.predictor_proj)
    if c.copy_last:  # plus the plain layer norm of the latest earlier context token at each place
        per_step = grid_hw[0] * grid_hw[1]
        normed = (context - context.mean(-1, keepdim=True)) / (
            context.var(-1, unbiased=False, keepdim=True) + 1e-5
        ).sqrt()
        for row, query in enumerate(int(n) for n in target_idx):
            earlier = [
                (int(n) // per_step, i)
                for i, n in enumerate(context_idx)
                if int(n) % per_step == query % per_step and int(n) // per_step < query // per_step
            ]
            if earlier:
                out[row] = out[row] + normed[max(earlier)[1]]
    return out


def reference_sigreg(x, generator, directions=256, knots=17, t_max=3.0):
    """SIGReg (LeJEPA) of samples x (N, D) in float64: the Epps-Pulley statistic of each random unit
    projection, N * integral over t of |empirical - Gaussian characteristic function|^2 weighted by
    exp(-t^2 / 2) (trapezoid rule on [0, t_max]), averaged over the projections."""
    projection = torch.randn(x.shape[1], directions, generator=generator).double()
    projection = projection / projection.norm(dim=0)
    values = x @ projection  # (N, P)
    total = 0.0
    for k in range(knots):
        t = t_max * k / (knots - 1)
        weight = t_max / (knots - 1) * (0.5 if k in (0, knots - 1) else 1.0) * math.exp(-t * t / 2)
        real = torch.cos(t * values).mean(0) - math.exp(-t * t / 2)
        imaginary = torch.sin(t * values).mean(0)
        total = total + weight * (real**2 + imaginary**2)
    return len(x) * total.mean()


def reference_vjepa_loss(model, videos, masks, generator=None):
    """The V-JEPA 2 training loss in float64, from the paper: targets are the target encoder's
    tokens of the full clip, layer-normed without affine parameters and without gradient; for each
    mask type the context encoder sees only the context tokens, the predictor fills in the target
    positions, and the L1 distance is averaged over clips, tokens and dims; the mask types are
    averaged with their weights. videos (B, 3, T, H, W); masks [(context_idx, target_idx)].
    With `model.config.target == "online"` the targets are the context encoder's, with gradient
    (LeJEPA); `model.config.sigreg` adds that weight times the weighted mean over mask types of
    SIGReg of all context tokens (or of each clip's mean context token, `sigreg_samples="clips"`),
    its directions drawn from `generator`."""
    c = model.context_encoder.config
    grid_hw = (videos.shape[-2] // c.patch_size, videos.shape[-1] // c.patch_size)
    online = model.config.target == "online"
    targets = []
    for video in videos:
        with torch.set_grad_enabled(online):
            tokens = reference_encoder(model.context_encoder if online else model.target_encoder, video)
            targets.append(torch.nn.functional.layer_norm(tokens, tokens.shape[-1:]))
    total, regularizer, weights = 0.0, 0.0, 0.0
    for index, (spec, (context_idx, target_idx)) in enumerate(zip(model.mask_specs, masks, strict=True)):
        errors, contexts = [], []
        for b, video in enumerate(videos):
            context = reference_encoder(model.context_encoder, video, context_idx[b])
            predicted = reference_predictor(
                model.predictor, context, context_idx[b], target_idx[b], index, grid_hw
            )
            target = targets[b][target_idx[b]]  # (n_tgt, D)
            if model.config.center_per_clip:  # deviations from the clip's mean token
                predicted, target = predicted - predicted.mean(0), target - target.mean(0)
            errors.append((predicted - target).abs().mean())
            contexts.append(context)
        total = total + spec.weight * torch.stack(errors).mean()
        if model.config.sigreg:
            clips = model.config.sigreg_samples == "clips"  # each clip's mean token, or every token
            samples = torch.stack([c.mean(0) for c in contexts]) if clips else torch.cat(contexts)
            regularizer = regularizer + spec.weight * reference_sigreg(samples, generator)
        weights += spec.weight
    return (total + model.config.sigreg * regularizer) / weights
