"""The design document's seed API in one import, so its examples run as written:

    from vjepa_world.seed import ActionConditionedVJEPA, VJEPAModel, WorldModel, agent

`WorldModel` (alias `ActionConditionedVJEPA`) and `agent` are the package's own. `VJEPAModel` is the
package's with one method more, `pretrain(videos)`: it runs the real pretraining loop
(`train/pretrain.py`) on this model, in place. (It lives here rather than in `jepa.py` because a
model does not import its training: data flows from models to training, not back.)

Shapes differ from the seed's `(batch, num_frames, 768)`: `model.context_encoder(video)` returns
every token, `(batch, T/2 * H/16 * W/16, dim)` (tubelets of two frames and 16 px patches);
`model.context_encoder.encode(video, pool="frame")` gives one feature per time step,
`(batch, T/2, dim)`, and `pool="mean"` one per clip `(batch, dim)`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import agent
from .data.datasets import VideoDataset
from .jepa import VJEPAModel as _VJEPAModel
from .train.config import OptimConfig, PretrainConfig, RunConfig
from .train.pretrain import pretrain as _pretrain
from .world_model import ActionConditionedVJEPA, WorldModel


class VJEPAModel(_VJEPAModel):
    """`VJEPAModel` with the seed's `pretrain(videos)`."""

    def pretrain(
        self,
        videos,
        out: str | Path | None = None,
        *,
        steps: int = 100,
        batch_size: int = 4,
        lr: float = 5e-4,
        progress: bool = True,
    ) -> dict:
        """Pretrain this model for `steps` steps on `videos` (a folder, a list of files, a path,label
        CSV, or a `VideoDataset`, whose files are used), with the V-JEPA objective and the EMA target,
        writing checkpoints and logs into `out` (default: a new temporary directory). Returns the run's
        summary (with `out`)."""
        if isinstance(videos, VideoDataset):
            videos = videos.files
        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="vjepa-pretrain-"))
        optim = OptimConfig(
            batch_size=batch_size, steps=steps, lr=lr, warmup_steps=min(10, steps), start_lr=lr / 10
        )
        config = PretrainConfig(model=self.config, optim=optim, run=RunConfig(checkpoint_every=max(steps, 1)))
        config.data.num_workers = 0
        summary = _pretrain(config, videos, out, progress=progress, model=self)
        return {**summary, "out": str(out)}


__all__ = ["ActionConditionedVJEPA", "VJEPAModel", "WorldModel", "agent"]
