"""The design document's examples, run as written (only the import path is this package's).

    python examples/seed_api.py [--out DIR]      # about a minute on a laptop CPU: tiny models, few episodes

The lines marked "seed" are the design document's own; the others make data for them and show what
comes back. Shapes differ from the seed's `(batch, num_frames, 768)`: the encoder returns every
token `(batch, T/2 * (H/p) * (W/p), dim)`; `encode(video, pool="frame")` gives `(batch, T/2, dim)`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vjepa_world.data.episodes import LeRobotDataset, write_lerobot_dataset
from vjepa_world.envs import REACHER_REWARD_ID, collect_episodes
from vjepa_world.seed import ActionConditionedVJEPA, VJEPAModel, WorldModel, agent
from vjepa_world.train.config import WorldModelConfig, build_config
from vjepa_world.train.world_model import train_world_model

TINY_WORLD_MODEL = [  # train-wm on the frozen encoder (V-JEPA 2-AC's recipe), sized for seconds
    "model.encoder_training=frozen", "model.dim=32", "model.depth=2", "model.num_heads=2",
    "optim.steps=20", "optim.batch_size=8", "optim.warmup_steps=2", "optim.decay_steps=5",
    "data.frame_skip=2", "data.sequence_length=4", "data.eval_horizon=1",
    "loss.rollout_context=1", "loss.rollout_steps=1", "distance.steps=0", "uncertainty.steps=20",
]  # fmt: skip


def main(out: Path) -> dict:
    torch.manual_seed(0)
    # episodes of the reward reacher (frames, actions, rewards); their videos serve pretraining too
    episodes = collect_episodes(REACHER_REWARD_ID, 6, 24, image_size=32, progress=False)
    data = write_lerobot_dataset(out / "episodes", episodes, progress=False)
    videos = data / "videos"

    # seed: self-supervised pretraining on videos
    config = {
        "encoder_dim": 64,
        "predictor_dim": 32,
        "num_frames": 4,
        "mask_ratio": 0.75,
        "temporal_mask_ratio": 0.5,
    }
    config["preset"] = "vit_micro"  # (not the seed's: 32 px frames, 8 px patches, 2 blocks)
    vjepa = VJEPAModel(config)
    vjepa.pretrain(videos)

    # seed: an action-conditioned world model on the pretrained encoder
    world_model = ActionConditionedVJEPA(vjepa)
    world_model.add_action_input()  # the action size is taken from the data when first seen
    frames = torch.from_numpy(LeRobotDataset(data).read_frames(0, range(4)))  # (4, 32, 32, 3) uint8
    z = world_model.encode(frames)  # (4, 16, 64): 4 x 4 tokens of 64 per frame
    actions = torch.from_numpy(LeRobotDataset(data).read_rows(0)["actions"][:3])[None]  # (1, 3, 2)
    imagined = world_model.rollout(z[:1], actions)  # builds the predictor for 2-D actions: (1, 3, 16, 64)

    # seed: a world model around a V-JEPA encoder
    model = vjepa
    world_model = WorldModel()
    world_model.encoder = model.context_encoder
    video = torch.randn(1, 3, 4, 32, 32)  # (B, 3, T, H, W), normalised
    features = model.context_encoder(video)  # (1, 32, 64): every token; per frame:
    per_frame = model.context_encoder.encode(video, pool="frame")  # (1, 2, 64): one per tubelet of 2 frames

    # train its dynamics and its reward head on the episodes (train-wm's loop, encoder frozen)
    settings = build_config({}, TINY_WORLD_MODEL, kind=WorldModelConfig)
    train_world_model(settings, data, out / "world_model", encoder=world_model.encoder, progress=False)
    world_model = WorldModel.from_pretrained(out / "world_model")

    # seed: learn a policy inside the world model (start states: N(0, 1) latents; pass a dataset to
    # replay its frames instead: agent.learn_with_world_model(world_model, data))
    policy = agent.learn_with_world_model(world_model, config=agent.AgentConfig(steps=20, batch_size=32))
    now = world_model.encode(frames[:1])  # the policy also reads the state: observed, or read from `now`
    action = policy.act(now, world_model.read_state(now))  # (1, 4): 2 torques for each of 2 env steps

    shapes = {
        "latents": tuple(z.shape),
        "imagined": tuple(imagined.shape),
        "features": tuple(features.shape),
        "per_frame": tuple(per_frame.shape),
        "action": tuple(action.shape),
    }
    for name, shape in shapes.items():
        print(f"{name:10} {shape}")
    return shapes


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="where data and runs go (default: a temporary directory)")
    args = parser.parse_args()
    main(args.out or Path(tempfile.mkdtemp(prefix="seed-api-")))
