"""One process per device under torchrun (DDP, or FSDP for large models), or a single process.

Thin glue over torch.distributed: set-up from torchrun's environment, wrapping, averaging metrics.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Process:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Process:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Process(rank=rank, world_size=world_size, device=torch_device)


def wrap(model: nn.Module, trainable: list[nn.Module], process: Process, fsdp: bool) -> nn.Module:
    """The module to call for the forward: DDP over `model`, or `model` itself with each of
    `trainable`'s blocks and the frozen target sharded by FSDP (fully_shard)."""
    if process.world_size == 1:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for module in trainable:
            for block in getattr(module, "blocks", None) or getattr(module, "predictor_blocks", []):
                fully_shard(block)
            fully_shard(module)
        return fully_shard(model)
    ids = [process.device.index] if process.device.type == "cuda" else None
    # only some of the predictor's mask tokens are used: let DDP skip the unused ones
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def autocast(process: Process, precision: str):
    """bf16 autocast on the process's device for precision "bfloat16"; a no-op for "float32"."""
    if precision == "bfloat16":
        return torch.autocast(process.device.type, dtype=torch.bfloat16)
    return nullcontext()


def no_sync(net: nn.Module, skip: bool):
    """Skip the gradient all-reduce for accumulation micro-batches (DDP and FSDP alike)."""
    if not skip:
        return nullcontext()
    if isinstance(net, nn.parallel.DistributedDataParallel):
        return net.no_sync()
    if hasattr(net, "set_requires_gradient_sync"):
        return _fsdp_no_sync(net)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(net):
    net.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        net.set_requires_gradient_sync(True)


def mean(values: dict[str, float], process: Process) -> dict[str, float]:
    """Average scalar metrics over all processes."""
    if process.world_size == 1 or not values:
        return values
    packed = torch.tensor(list(values.values()), dtype=torch.float64, device=process.device)
    dist.all_reduce(packed)
    return dict(zip(values, (packed / process.world_size).tolist(), strict=True))


def total(value: int, process: Process) -> int:
    if process.world_size == 1:
        return value
    packed = torch.tensor([value], dtype=torch.int64, device=process.device)
    dist.all_reduce(packed)
    return int(packed)


def barrier(process: Process) -> None:
    if process.world_size > 1:
        dist.barrier()


def teardown() -> None:
    """Leave the process group (at the end of a torchrun job)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def full_state(model: nn.Module, optimizer, sharded: bool) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (under FSDP a collective: every rank calls)."""
    if not sharded:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer, state: dict, sharded: bool) -> None:
    """Load a state saved by `full_state` into a (possibly sharded) optimizer."""
    if not sharded:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
