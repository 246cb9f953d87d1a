"""Feature extraction on a small generated clip: the quick start of the README, runnable as is.

Writes a 32-frame video of a moving square, encodes it with a randomly initialised `vit_tiny`
encoder through the `vjepa-world extract` command, and prints what was written.
"""

from pathlib import Path

import numpy as np
from safetensors import safe_open

from vjepa_world.cli import main
from vjepa_world.data.video import write_video

out = Path("demo_out")
frames = np.zeros((32, 96, 128, 3), dtype=np.uint8)
for t in range(32):
    frames[t, 30:60, 3 * t : 3 * t + 30] = (230, 60, 40)  # a red square moving right
video = write_video(out / "moving_square.mp4", frames, fps=8)

code = main(
    [
        "extract",
        "--data",
        str(video),
        "--encoder",
        "random:vit_tiny",
        "--frames",
        "8",
        "--frame-step",
        "2",
        "--clips",
        "0",
        "--pool",
        "frame",
        "--out",
        str(out / "features"),
    ]
)
with safe_open(out / "features" / "features.safetensors", "pt") as f:
    print("features", tuple(f.get_tensor("features").shape), "files", f.metadata()["files"])
raise SystemExit(code)
