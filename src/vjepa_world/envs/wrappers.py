"""`make_env`: any gymnasium environment as RGB-frame observations with Box actions.

A spec is a registered id (ours, e.g. "vjepa_world/ReacherGoal-v0", or any gymnasium id) or
"module:ClassName" for a user's own environment class (or factory). Constructors that take
`image_size` get it, and those that can render "rgb_array" are made with that render mode.

Environments whose observations are already RGB frames (H, W, 3) uint8, or dicts with a "pixels"
frame, are returned as they are. Others that render "rgb_array" are wrapped in `PixelObservation`:
the observation becomes the rendered frame squashed to (image_size, image_size) (aspect ratio not
kept, so the whole scene stays visible), `info["state"]` the original observation flattened. Such
environments have no goal: `info["goal_image"]` is None and `info["is_success"]` False unless the
environment provides them, so they serve data collection and world-model training, while planning
needs an environment with goal images.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from PIL import Image

from .reacher import select_gl_backend


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 by area averaging (box filter); as is if already that size.
    The result is a writable array (PIL's own view is read-only, which torch warns about)."""
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.shape[:2] == (size, size):
        return frame
    return np.array(Image.fromarray(frame).resize((size, size), Image.Resampling.BOX))


def is_frame_space(space: spaces.Space) -> bool:
    """Whether observations of `space` are RGB frames: a uint8 Box (H, W, 3) or a Dict with such "pixels"."""
    if isinstance(space, spaces.Dict):
        return "pixels" in space.spaces and is_frame_space(space["pixels"])
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[-1] == 3
    )


class PixelObservation(gymnasium.Wrapper):
    """Observation = the rendered frame at (image_size, image_size); the old one in info["state"]."""

    def __init__(self, env: gymnasium.Env, image_size: int = 64) -> None:
        if env.render_mode != "rgb_array":
            raise ValueError(f"PixelObservation needs render_mode='rgb_array', got {env.render_mode!r}")
        super().__init__(env)
        self.image_size = image_size
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        inner = env.observation_space
        self.state_dim = int(np.prod(inner.shape)) if isinstance(inner, spaces.Box) else 0

    def _frame(self) -> np.ndarray:
        return resize_frame(self.env.render(), self.image_size)  # (S, S, 3) uint8

    def _info(self, observation: Any, info: dict[str, Any]) -> dict[str, Any]:
        """info with the documented keys filled in where the env left them out."""
        info = dict(info)
        if self.state_dim:
            info.setdefault("state", np.asarray(observation, dtype=np.float32).reshape(-1))
        info.setdefault("is_success", False)
        return info

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env; the info gains goal_image None (no goal) unless the env gives one."""
        observation, info = self.env.reset(**kwargs)
        info = self._info(observation, info)
        info.setdefault("goal_image", None)
        return self._frame(), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """Step the env and observe its rendered frame."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._frame(), reward, terminated, truncated, self._info(observation, info)


def _constructor_kwargs(creator: Callable, image_size: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """kwargs plus image_size and render_mode="rgb_array" where the constructor takes and supports them."""
    kwargs = dict(kwargs)
    try:
        parameters = inspect.signature(creator).parameters
    except (TypeError, ValueError):  # builtins and the like: pass only what the user gave
        return kwargs
    if "image_size" in parameters:
        kwargs.setdefault("image_size", image_size)
    render_modes = getattr(creator, "metadata", {}).get("render_modes", [])
    if "render_mode" in parameters and "rgb_array" in render_modes:
        kwargs.setdefault("render_mode", "rgb_array")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renderers: no window, no warning
    return kwargs


def _make_registered(env_id: str, image_size: int, kwargs: dict[str, Any]) -> gymnasium.Env:
    """gymnasium.make for a registered id, with image_size and render_mode where they apply."""
    if env_id not in gymnasium.registry:
        close = difflib.get_close_matches(env_id, list(gymnasium.registry), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown environment id {env_id!r}{hint}: give a registered gymnasium id or 'module:ClassName'"
        )
    entry_point = gymnasium.spec(env_id).entry_point
    if "mujoco" in str(entry_point):
        select_gl_backend()  # loading the entry point imports mujoco
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    return gymnasium.make(env_id, **_constructor_kwargs(creator, image_size, kwargs))


def _make_from_class(spec: str, image_size: int, kwargs: dict[str, Any]) -> gymnasium.Env:
    """Instantiate `module:ClassName` (a gymnasium.Env subclass or a factory returning one)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"bad environment spec {spec!r}: expected a registered id or 'module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of env spec {spec!r}: {err}") from None
    creator = getattr(module, name, None)
    if creator is None and name in gymnasium.registry:  # gymnasium's own "module:EnvId" form
        return _make_registered(name, image_size, kwargs)
    if not callable(creator):
        raise ValueError(f"module {module_name!r} has no class {name!r} (environment spec {spec!r})")
    env = creator(**_constructor_kwargs(creator, image_size, kwargs))
    if not isinstance(env, gymnasium.Env):
        raise ValueError(f"{spec!r} made a {type(env).__name__}, not a gymnasium.Env")
    return env


def _checked(env: gymnasium.Env, spec: str, image_size: int) -> gymnasium.Env:
    """env itself if it meets the contract, wrapped in PixelObservation if it can render, else ValueError."""
    if not isinstance(env.action_space, spaces.Box):
        raise ValueError(
            f"{spec!r} has a {type(env.action_space).__name__} action space: world models here need a Box"
        )
    if is_frame_space(env.observation_space):
        return env
    if env.render_mode == "rgb_array":
        return PixelObservation(env, image_size)
    raise ValueError(f"{spec!r} observes no RGB frames and cannot render 'rgb_array' to make them")


def make_env(spec: str, image_size: int = 64, **kwargs: Any) -> gymnasium.Env:
    """An environment with RGB-frame observations and Box actions: a registered id or 'module:ClassName'."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"environment spec must be a non-empty string, got {spec!r}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    spec = spec.strip()
    make = _make_from_class if ":" in spec else _make_registered
    env = make(spec, image_size, kwargs)
    try:
        return _checked(env, spec, image_size)
    except ValueError:
        env.close()
        raise
