"""The agent's decision compiled ahead of time: `torch.export` traces `PolicyDecision` (frames in,
world-model action out) and AOTInductor compiles it into one package of C++ for this machine's
CPU. At batch 1 an eager decision is mostly Python and dispatch overhead around ~100 small
operators; the compiled one fuses them (2.4x faster on the reward reacher's policy, actions equal
to 1e-6). What a robot would run: the package loads with torch alone
(`torch._inductor.aoti_load_package`), without this library's model code.

A package is specific to the kind of machine that compiled it (its instruction set) and to one
frame size; it holds the policy's mode, not samples. Compiling needs a C++ compiler (g++).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from torch import Tensor

from .agent_pixels import PolicyDecision
from .files import atomic_write

POLICY_PACKAGE = "policy.pt2"  # where evaluate --compiled and export-policy put it in a run
META_KEY = "vjepa_world.policy"  # the package's metadata entry holding `CompiledPolicy`'s settings


def _check_compiler() -> None:
    """A one-line error before minutes of tracing when there is nothing to compile with."""
    if not any(name and shutil.which(name) for name in (os.environ.get("CXX"), "g++", "c++", "clang++")):
        raise RuntimeError(
            "compiling the policy needs a C++ compiler: install g++ (e.g. apt install g++) or set CXX"
        )


def export_policy(world_model, agent, path: str | os.PathLike, frame_size: tuple[int, int]) -> CompiledPolicy:
    """Compile the agent's decision (the policy's mode) on frames of `frame_size` (height, width)
    into the package `path` (`.pt2`, written atomically) and load it. Takes ~10-30 s."""
    _check_compiler()
    height, width = frame_size
    state_dim = agent.state_dim
    decision = PolicyDecision(world_model, agent).eval()
    example = (
        torch.zeros(1, height, width, 3, dtype=torch.uint8),  # the frame
        torch.zeros(1, height, width, 3, dtype=torch.uint8),  # the frame before it
        torch.zeros(1, state_dim),  # the proprioceptive state, (1, 0) when not read
    )
    settings = {
        "frame_shape": [height, width, 3],
        "state_dim": state_dim,
        "frame_skip": decision.frame_skip,
        "observation_frames": decision.observation_frames,
    }
    package = io.BytesIO()
    configs = {"aot_inductor.metadata": {META_KEY: json.dumps(settings)}}
    with torch.no_grad(), warnings.catch_warnings():
        torch_own = re.escape("`isinstance(treespec, LeafSpec)`")  # a deprecation inside torch.export
        warnings.filterwarnings("ignore", torch_own, FutureWarning)
        program = torch.export.export(decision, example)
        torch._inductor.aoti_compile_and_package(program, package_path=package, inductor_configs=configs)
    return CompiledPolicy(atomic_write(path, lambda tmp: tmp.write_bytes(package.getvalue())))


class CompiledPolicy:
    """A package from `export_policy`, called as `PolicyDecision` is: frame `(1, H, W, 3)` uint8,
    the frame before it, state `(1, S)` -> world-model action `(1, A)`. Carries `frame_skip`,
    `observation_frames` and `state_dim`, so that `AgentPolicy(CompiledPolicy(path))` acts alone."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"policy package {path} does not exist: make one with export_policy")
        self.runner = torch._inductor.aoti_load_package(str(path))
        settings = self.runner.get_metadata().get(META_KEY)
        if settings is None:
            raise ValueError(f"{path} is not a policy package of export_policy (no {META_KEY} metadata)")
        settings = json.loads(settings)
        self.frame_shape = tuple(settings["frame_shape"])
        self.state_dim = settings["state_dim"]
        self.frame_skip = settings["frame_skip"]
        self.observation_frames = settings["observation_frames"]

    def __call__(self, frame: Tensor, previous: Tensor, state: Tensor) -> Tensor:
        for name, tensor, shape in (
            ("frame", frame, (1, *self.frame_shape)),
            ("previous frame", previous, (1, *self.frame_shape)),
            ("state", state, (1, self.state_dim)),
        ):
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"the compiled policy takes a {name} of shape {shape}, got {tuple(tensor.shape)}: "
                    "export it again for these observations"
                )
        return self.runner(frame, previous, state.float())


__all__ = ["POLICY_PACKAGE", "CompiledPolicy", "export_policy"]
