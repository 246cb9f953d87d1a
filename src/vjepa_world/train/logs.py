"""Training logs: one JSON line per step (`log.jsonl`) and TensorBoard scalars (`tensorboard/`)."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class MetricsLog:
    """Appends `{"step": s, ...}` lines and mirrors every value as a TensorBoard scalar.

    Resuming at `start_step` drops what a killed run logged after its last checkpoint, in both,
    so the logs read as one uninterrupted run.
    """

    def __init__(self, out_dir: Path, enabled: bool = True, start_step: int = 0):
        self.enabled = enabled
        if enabled:
            self.path = out_dir / "log.jsonl"
            kept = [row for row in read_log(out_dir) if row["step"] <= start_step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
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


def read_log(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
