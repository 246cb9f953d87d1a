"""One V-JEPA training step's loss and gradients, run alone or under torchrun (see test_pretrain.py).

Uses the trainer's own pieces: process set-up, wrapping, global-batch masks sliced per rank.
"""

import sys

import torch

from vjepa_world.jepa import VJEPAModel
from vjepa_world.train import distributed
from vjepa_world.train.pretrain import rank_slice, step_generator

GLOBAL_BATCH = 4


def main(out_path: str) -> None:
    process = distributed.setup("cpu")
    torch.manual_seed(0)
    model = VJEPAModel({"preset": "vit_micro", "temporal_mask_ratio": 0.5})
    videos = torch.randn(GLOBAL_BATCH, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    per_rank = GLOBAL_BATCH // process.world_size
    net = distributed.wrap(model, [model.context_encoder, model.predictor], process, fsdp=False)
    masks = model.sample_masks(model.grid(videos), GLOBAL_BATCH, step_generator(0, 0, 0))
    rows = slice(process.rank * per_rank, (process.rank + 1) * per_rank)
    loss, _ = net(videos[rows], rank_slice(masks, process.rank, per_rank))
    loss.backward()
    mean_loss = distributed.mean({"loss": float(loss)}, process)["loss"]
    if process.is_main:
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        torch.save({"loss": mean_loss, "grads": grads}, out_path)
    distributed.barrier(process)


if __name__ == "__main__":
    main(sys.argv[1])
