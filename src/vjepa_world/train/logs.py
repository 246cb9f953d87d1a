"""Training logs: one JSON line per step (`log.jsonl`, read back with `read_log`) and TensorBoard
scalars (`tensorboard/`)."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from ..files import LOG_FILE, read_log, write_jsonl

__all__ = ["MetricsLog", "read_log"]


class MetricsLog:
    """Appends `{"step": s, ...}` lines and mirrors every value as a TensorBoard scalar.

    Resuming at `start_step` drops what a killed run logged after its last checkpoint, in both,
    so the logs read as one uninterrupted run.
    """

    def __init__(self, out_dir: Path, enabled: bool = True, start_step: int = 0):
        self.enabled = enabled
        if enabled:
            self.path = out_dir / LOG_FILE
            kept = [row for row in read_log(out_dir) if row["step"] <= start_step]
            write_jsonl(self.path, kept)
            self.writer = SummaryWriter(
                str(out_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None
            )

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
