"""Learning-rate and EMA-momentum schedules, as pure functions of the step."""

from __future__ import annotations


def warmup_stable_decay(
    step: int, *, steps: int, lr: float, start_lr: float, final_lr: float, warmup_steps: int, decay_steps: int
) -> float:
    """Linear warmup start_lr -> lr, constant, then linear decay to final_lr over the last decay_steps."""
    if step < warmup_steps:
        return start_lr + (lr - start_lr) * step / warmup_steps
    decay_start = steps - decay_steps
    if decay_steps > 0 and step >= decay_start:
        return lr + (final_lr - lr) * min((step - decay_start) / decay_steps, 1.0)
    return lr


def set_learning_rate(optimizer, optim, step: int) -> float:
    """Set every group's lr to the warmup-stable-decay value of `step` under `optim` (an
    OptimConfig), times the group's `lr_scale` if it has one, and return the unscaled value."""
    lr = warmup_stable_decay(
        step,
        steps=optim.steps,
        lr=optim.lr,
        start_lr=optim.start_lr,
        final_lr=optim.final_lr,
        warmup_steps=optim.warmup_steps,
        decay_steps=optim.decay_steps,
    )
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr


def linear(step: int, steps: int, start: float, end: float) -> float:
    """start at step 0, end at the last step."""
    return start + (end - start) * min(step / max(steps - 1, 1), 1.0)
