"""The main job (`vjepa-world demo`, `make demo`): a world model that plans, from nothing.

1. collect episodes of the environment with collect's default policy (LeRobot layout, `OUT/data`);
2. `train-wm` on them with its defaults: encoder, projector, state head and action-conditioned
   predictor trained jointly from pixels with SIGReg (`OUT/world_model`);
3. plan toward goal images with MPC, against random actions from the same starts (`OUT/plan`);
4. print the results table and write `OUT/report.md` with the plots and one episode video.

Every stage reuses what a previous run finished (and training resumes from its checkpoint), so
rerunning after an interruption picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import planner_config
from .data.episodes import LeRobotDataset
from .envs import DEFAULT_POLICY, REACHER_ID, collect_dataset
from .eval.planning import evaluate_planning
from .files import write_json, write_text
from .train.config import WorldModelConfig, build_config
from .train.world_model import check_config, train_world_model
from .viz import plot_errors_by_horizon
from .world_model import WorldModel

SMOKE_TRAINING = [  # seconds instead of minutes: for tests and CI, not for results
    "encoder.preset=vit_micro",
    "encoder.depth=2",
    "encoder.dim=64",
    "model.dim=32",
    "model.depth=2",
    "model.num_heads=2",
    "optim.steps=6",
    "optim.batch_size=4",
    "optim.warmup_steps=2",
    "optim.decay_steps=2",
    "data.eval_horizon=2",
    "distance.steps=20",
    "distance.batch_size=32",
    "uncertainty.steps=5",
    "uncertainty.batch_size=16",
]


@dataclass
class DemoSettings:
    env: str = REACHER_ID
    episodes: int = 400  # collected for training, 50 steps each on ReacherGoal (20,000 frames)
    steps: int = 50
    policy: str = DEFAULT_POLICY
    image_size: int = 64
    # train-wm `section.key=value` overrides: the demo plans deterministically toward goal images, so
    # it skips the uncertainty heads (sampled futures; ~1.5 min of fitting)
    training: list[str] = field(default_factory=lambda: ["uncertainty.kind=none", "uncertainty.ensemble=0"])
    planner: str = "default"  # planner preset
    planner_changes: dict = field(default_factory=dict)
    plan_episodes: int = 50
    plan_steps: int | None = None  # default: the environment's time limit
    seed: int = 0

    @classmethod
    def smoke(cls, **changes) -> DemoSettings:
        """The whole pipeline in well under a minute."""
        settings = cls(
            episodes=6,
            steps=30,  # one training window at the default frame skip 5 (6 frames x 5 steps)
            training=list(SMOKE_TRAINING),
            planner_changes={"samples": 16, "elites": 4, "iterations": 2},
            plan_episodes=2,
            plan_steps=7,
        )
        for key, value in changes.items():
            setattr(settings, key, value)
        return settings


def collect_stage(settings: DemoSettings, out: Path) -> Path:
    """The training data, collected unless `out` already holds a finished dataset."""
    if (out / "meta" / "info.json").exists():
        return out
    collect_dataset(
        settings.env,
        out,
        settings.episodes,
        settings.steps,
        policy=settings.policy,
        seed=settings.seed,
        image_size=settings.image_size,
    )
    return out


def train_stage(settings: DemoSettings, data: Path, out: Path) -> dict:
    """The trained world model's summary: reused when finished, resumed when interrupted."""
    if (out / "summary.json").exists():
        return json.loads((out / "summary.json").read_text())
    config = build_config({}, settings.training, kind=WorldModelConfig)
    return train_world_model(config, data, out, resume=(out / "checkpoint.pt").exists())


def write_report(out: Path, settings: DemoSettings, training: dict, planning: dict, seconds: dict) -> Path:
    """`report.md`: the results table, the plots and the first episode's video."""
    val = training.get("val", {}).get("l1", {})
    lines = [
        f"# vjepa-world demo: {settings.env}",
        "",
        f"{settings.episodes} episodes ({settings.policy} policy) -> world model trained end to end from "
        f"pixels ({training.get('encoder_training', '?')} encoder, {training.get('latent', '?')} latents, "
        f"frame skip {training.get('frame_skip', '?')}) -> MPC toward goal images "
        f"({planning['settings']['method']}, "
        f"{planning['settings']['samples']} samples x {planning['settings']['iterations']} iterations, "
        f"horizon {planning['settings']['horizon']}, {planning['settings']['objective']} energy).",
        "",
        "| | planning | random actions |",
        "|---|---|---|",
        f"| success rate: at the goal at the end ({planning['episodes']} episodes) "
        f"| {100 * planning['success_rate']:.0f}% | {100 * planning['random_success_rate']:.0f}% |",
        f"| passed within the radius at some step | {100 * planning['reached_rate']:.0f}% "
        f"| {100 * planning['random_reached_rate']:.0f}% |",
        f"| final distance to goal | {_fmt(planning['final_distance'])} "
        f"| {_fmt(planning['random_final_distance'])} |",
        f"| seconds per environment step (mean) | {planning['seconds_per_action']:.3f} | - |",
        "",
        "Stage times: " + ", ".join(f"{stage} {value:.0f} s" for stage, value in seconds.items()) + ".",
        "",
    ]
    if val:
        plot_errors_by_horizon(
            list(range(1, len(val["world model"]) + 1)),
            val,
            out / "rollout_error.png",
            title="held-out latent rollout error",
        )
        lines += ["## World model: held-out rollout error", "", "![rollout error](rollout_error.png)", ""]
    lines += [
        "## Training",
        "",
        "![training curves](world_model/training_curves.png)",
        "",
        "## Planning",
        "",
        "![distance to the goal over time](plan/distance_over_time.png)",
        "",
        "![energy by iteration](plan/energy_by_iteration.png)",
        "",
        "First episode (observation | goal): [plan/episode_000.mp4](plan/episode_000.mp4)",
        "",
    ]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def run_demo(out: str | Path, settings: DemoSettings | None = None) -> dict:
    """Collect, train, plan, report (see the module docstring); returns the summary."""
    settings = settings or DemoSettings()
    out = Path(out)
    config = planner_config(settings.planner, **settings.planner_changes)  # bad settings fail before
    check_config(build_config({}, settings.training, kind=WorldModelConfig))  # any work
    seconds = {}
    started = time.perf_counter()
    data = collect_stage(settings, out / "data")
    seconds["collect"], started = time.perf_counter() - started, time.perf_counter()
    print(f"[1/3] data: {len(LeRobotDataset(data, state_key=None))} episodes in {data}", flush=True)
    training = train_stage(settings, data, out / "world_model")
    seconds["train"], started = time.perf_counter() - started, time.perf_counter()
    print(f"[2/3] world model: {out / 'world_model'}", flush=True)
    world_model = WorldModel.from_pretrained(out / "world_model").eval()
    planning = evaluate_planning(
        settings.env,
        world_model,
        config,
        out / "plan",
        episodes=settings.plan_episodes,
        image_size=settings.image_size,
        max_steps=settings.plan_steps,
    )
    seconds["plan"] = time.perf_counter() - started
    print(f"[3/3] planning: {out / 'plan'}", flush=True)
    report = write_report(out, settings, training, planning, seconds)
    summary = {
        "success_rate": planning["success_rate"],
        "random_success_rate": planning["random_success_rate"],
        "final_distance": planning["final_distance"],
        "random_final_distance": planning["random_final_distance"],
        "seconds_per_action": planning["seconds_per_action"],
        "stage_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "report": str(report),
    }
    write_json(out / "summary.json", summary)
    return summary
