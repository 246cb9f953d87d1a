"""File writing every part of the package shares: atomic writes, JSON summaries and JSON-lines logs.

A leaf module (it imports nothing from the package), so data readers, models, training loops and
the command line can all use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

LOG_FILE = "log.jsonl"  # a training run's metrics, one JSON object per logged step


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`, so a
    reader never sees a half-written file even if the process is killed mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented JSON (a command's `summary.json`, a dataset's metadata), atomically."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """One JSON object per line, atomically."""
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of a run folder's `log.jsonl` (none when the run has logged nothing yet)."""
    path = Path(run_dir) / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
