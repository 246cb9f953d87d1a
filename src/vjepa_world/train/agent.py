"""Agent training (`vjepa-world train-agent`): an actor-critic learned inside a trained world model.

Offline (the default): the world model of a train-wm run is copied into `OUT/world_model`, every
frame of its dataset (the run's summary names it, or `data=`) is encoded as a replayed start
state, and the agent (`agent.py`) is trained for `agent.steps` updates on
imagined rollouts (`checkpoint.pt` every `run.checkpoint_every` updates: a killed run resumed
with `resume=True` gives the same agent), saved (`OUT/agent.json`, `OUT/agent.safetensors`) and
evaluated in the environment against random actions (`OUT/eval/`).

Online (`online=True`), then `online.iterations` times: collect `online.episodes` episodes with the
policy's sampled actions into a copy of the dataset grown by them (`OUT/data_XXX`), continue the
world model's training on it for `online.world_model_steps` steps (`OUT/world_model_run`, resumed
from the original run's checkpoint, so it keeps its optimiser), re-encode the start states and
continue the agent for `online.agent_steps` updates. `OUT/online.json` records each finished
stage: a killed loop continues with `resume=True` where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..agent import Agent, check_world_model
from ..agent_pixels import AgentPolicy, PolicyDecision, StartStates, dataset_start_states
from ..checkpoints import read_checkpoint_file
from ..data.episodes import LeRobotDataset, write_lerobot_dataset
from ..envs import make_env
from ..envs.collect import rollout
from ..files import atomic_torch_save, write_json
from ..nn import VideoEncoder
from ..planner_teacher import label_starts
from ..world_model import WorldModel
from .config import TrainAgentConfig, WorldModelConfig, agent_inert_keys, build_config, refuse_inert_keys
from .logs import MetricsLog
from .world_model import train_world_model

log = logging.getLogger(__name__)
CHECKPOINT, ONLINE_STATE = "checkpoint.pt", "online.json"


def action_bounds(env_spec: str | None, world_model: WorldModel) -> tuple[Tensor, Tensor]:
    """The world model's action box: the environment's, repeated for the frame skip ([-1, 1] without one)."""
    if env_spec is None:
        return -torch.ones(world_model.action_dim), torch.ones(world_model.action_dim)
    env = make_env(env_spec)
    try:
        low = torch.as_tensor(env.action_space.low, dtype=torch.float32).repeat(world_model.frame_skip)
        high = torch.as_tensor(env.action_space.high, dtype=torch.float32).repeat(world_model.frame_skip)
    finally:
        env.close()
    if len(low) != world_model.action_dim:
        raise ValueError(
            f"the world model takes {world_model.action_dim}-D actions (frame skip {world_model.frame_skip}) "
            f"but {env_spec}'s are {len(low) // world_model.frame_skip}-D: use the one it was made for"
        )
    return low, high


def _run_data(world_model_dir: Path, data: str | Path | None) -> Path:
    """The dataset a train-wm run was trained on (its summary says), unless `data` is given."""
    if data is not None:
        return Path(data)
    summary = world_model_dir / "summary.json"
    recorded = json.loads(summary.read_text()).get("data") if summary.is_file() else None
    if not recorded or not Path(recorded).is_dir():
        raise ValueError(
            f"{world_model_dir} does not name the dataset it was trained on (summary.json 'data'): "
            "pass --data"
        )
    return Path(recorded)


class AgentTraining:
    """The agent, its optimisers' and sampler's state, and the update loop with checkpoints and logs."""

    def __init__(self, agent: Agent, out: Path, config: TrainAgentConfig, resume: bool):
        self.agent, self.out, self.config = agent, out, config
        self.generator = torch.Generator().manual_seed(config.run.seed)
        self.step, self.metrics = 0, {}  # the last update's metrics
        checkpoint = out / CHECKPOINT
        if resume and checkpoint.exists():
            state = read_checkpoint_file(checkpoint)
            agent.load_state_dict(state["agent"])
            agent.actor_optimizer.load_state_dict(state["actor_optimizer"])
            agent.critic_optimizer.load_state_dict(state["critic_optimizer"])
            self.generator.set_state(state["generator"])
            self.step, self.metrics = state["step"], state["metrics"]
            log.info("resuming %s at update %d", out, self.step)

    def save(self) -> None:
        state = {
            "agent": self.agent.state_dict(),
            "actor_optimizer": self.agent.actor_optimizer.state_dict(),
            "critic_optimizer": self.agent.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "step": self.step,
            "metrics": self.metrics,
            "config": json.dumps(self.config.to_dict()),
        }
        atomic_torch_save(state, self.out / CHECKPOINT)

    def train_until(self, end: int, world_model: WorldModel, starts: StartStates, progress: bool):
        """Updates until `end` (from wherever the checkpoint left off)."""
        run = self.config.run
        metrics_log = MetricsLog(self.out, start_step=self.step)
        bar = tqdm(total=end, initial=self.step, desc="train-agent", unit="update", disable=not progress)
        world_model.eval().requires_grad_(False)  # gradients pass through it to the actions, never into it
        # the same targets when a killed run resumes on the same model: seeded by the run, not the sampler
        teacher = label_starts(world_model, self.agent, starts, seed=self.config.run.seed, progress=progress)
        try:
            while self.step < end:
                picked = torch.randint(len(starts), (self.config.agent.batch_size,), generator=self.generator)
                latents, states, history = starts.batch(world_model, picked)
                self.metrics = self.agent.update(
                    world_model, latents, states, self.generator, history, teacher
                )
                self.step += 1
                if self.step % run.log_every == 0 or self.step == end:
                    metrics_log.write(self.step, self.metrics)
                if self.step % run.checkpoint_every == 0 or self.step == end:
                    self.save()
                bar.set_postfix(
                    ret=f"{self.metrics['return']:.2f}", reward=f"{self.metrics['imagined_reward']:.3f}"
                )
                bar.update()
        finally:
            bar.close()
            metrics_log.close()


def train_agent(
    config: TrainAgentConfig,
    world_model_dir: str | Path,
    out: str | Path,
    *,
    env: str | None = None,
    data: str | Path | None = None,
    resume: bool = False,
    online: bool = False,
    evaluate: Callable[..., dict] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Train an agent in the world model of the train-wm run `world_model_dir` (see the module
    docstring); returns the summary also written to `OUT/summary.json`. `stop_after` ends the
    offline phase after that many updates, as a kill would (for tests of resuming). `evaluate` runs the
    policy in `env` against random actions (the CLI passes `eval.agent.evaluate_agent`; training does
    not import evaluation): at the end, and after every online iteration."""
    world_model_dir, out = Path(world_model_dir), Path(out)
    if (out / CHECKPOINT).exists() and not resume:
        raise ValueError(
            f"{out} already holds a run ({CHECKPOINT}): pass --resume to continue it or use another --out"
        )
    if online and (env is None or evaluate is None):
        raise ValueError(
            "the online loop collects in an environment and evaluates there: pass --env (and evaluate)"
        )
    refuse_inert_keys(config, agent_inert_keys(online=online, env_given=env is not None))
    data = _run_data(world_model_dir, data)
    started = time.perf_counter()
    torch.manual_seed(config.run.seed)
    state = _read_online(out)
    model_dir = out / "world_model_run" if state.get("world_model_steps") else world_model_dir
    world_model = WorldModel.from_pretrained(model_dir).eval()
    check_world_model(world_model, config.agent)
    low, high = action_bounds(env, world_model)
    world_model.save_pretrained(out / "world_model")  # the run acts with its own copy
    starts = dataset_start_states(world_model, state.get("data", data), config.agent.history)
    latent_shape = tuple(starts.latents.shape[-2:])
    agent = Agent.for_world_model(world_model, latent_shape, low=low, high=high, config=config.agent)
    training = AgentTraining(agent, out, config, resume)
    end = config.agent.steps if stop_after is None else min(config.agent.steps, stop_after)
    training.train_until(max(end, training.step), world_model, starts, progress)
    if training.step < config.agent.steps:
        return {"steps": training.step, "finished": False}
    iterations = []
    if online:
        iterations = _online_loop(config, world_model_dir, out, env, data, training, evaluate, progress)
        world_model = WorldModel.from_pretrained(out / "world_model").eval()
    agent.save_pretrained(out)
    summary = {
        "steps": training.step,
        "finished": True,
        "final": training.metrics,
        "world_model": str(world_model_dir),
        "data": str(data),
        "online_iterations": iterations,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if env is not None and evaluate is not None and config.run.eval_episodes:
        summary["eval"] = evaluate(
            env, world_model, agent, out / "eval", episodes=config.run.eval_episodes, progress=progress
        )
        summary["eval"].pop("per_episode")
    write_json(out / "summary.json", summary)
    return summary


# ---------------------------------------------------------------------------- the online loop


def _read_online(out: Path) -> dict:
    path = out / ONLINE_STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_online(out: Path, state: dict) -> None:
    write_json(out / ONLINE_STATE, state)


def _collect_with_policy(env_spec: str, world_model, agent, data: Path, episodes: int, seed: int) -> list:
    """`episodes` episodes of the agent's sampled actions (episode i seeded `seed + i`), with frames
    the size of those in `data`."""
    dataset = LeRobotDataset(data, state_key=None)
    env = make_env(env_spec, image_size=dataset.features[dataset.image_key]["shape"][0])
    try:
        limit = getattr(env.spec, "max_episode_steps", None) or 50
        fps = float(env.metadata.get("render_fps") or 10.0)
        collected = []
        for i in range(episodes):
            generator = torch.Generator().manual_seed(seed + i)
            policy = AgentPolicy(PolicyDecision(world_model, agent, sample=True, generator=generator))
            collected.append(rollout(env, policy, seed + i, limit, fps, env_spec))
        return collected
    finally:
        env.close()


def _world_model_config(world_model_dir: Path, steps: int, freeze_latents: bool) -> WorldModelConfig:
    """The original run's config (from its checkpoint), training `steps` steps in all; with
    `freeze_latents`, a trained encoder's latents stay fixed (its regulariser then has no effect)."""
    values = json.loads(read_checkpoint_file(world_model_dir / CHECKPOINT)["config"])
    values["optim"]["steps"] = steps
    values["distance"] = {"steps": 0}  # the reward task needs no goal energy (its other keys: inert)
    if freeze_latents and values["model"]["encoder_training"] != "frozen":
        values["model"]["freeze_latents"] = True
        for key in ("regularizer", "regularizer_weight"):
            values["loss"].pop(key, None)
    return build_config(values, kind=WorldModelConfig)


def _online_loop(
    config, world_model_dir: Path, out: Path, env: str, data: Path, training, evaluate, progress
) -> list:
    """The online iterations (see the module docstring); each stage is skipped once recorded done."""
    state = _read_online(out)
    state.setdefault("data", str(data))
    state.setdefault("iterations", [])
    base_steps = json.loads(read_checkpoint_file(world_model_dir / CHECKPOINT)["config"])["optim"]["steps"]
    run_dir = out / "world_model_run"
    for i in range(len(state["iterations"]), config.online.iterations):
        world_model = WorldModel.from_pretrained(out / "world_model").eval()
        grown = out / f"data_{i + 1:03d}"
        if state.get("collected", 0) <= i:  # 1. collect with the current policy
            seed = config.run.seed + 1_000_000 + i * config.online.episodes
            episodes = _collect_with_policy(
                env, world_model, training.agent, Path(state["data"]), config.online.episodes, seed
            )
            shutil.rmtree(grown, ignore_errors=True)
            shutil.copytree(state["data"], grown)
            write_lerobot_dataset(grown, episodes, append=True, progress=False)
            previous = Path(state["data"])
            state |= {"data": str(grown), "collected": i + 1}
            _write_online(out, state)
            if previous.parent == out:
                shutil.rmtree(previous, ignore_errors=True)
        steps = base_steps + (i + 1) * config.online.world_model_steps
        if state.get("world_model_steps", 0) < steps:  # 2. continue the world model on the grown data
            if not (run_dir / CHECKPOINT).exists():
                run_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(world_model_dir / CHECKPOINT, run_dir / CHECKPOINT)
            wm_config = _world_model_config(world_model_dir, steps, config.online.freeze_latents)
            joint = wm_config.model.encoder_training == "joint"
            encoder = None if joint else VideoEncoder.from_pretrained(out / "world_model")
            train_world_model(
                wm_config, state["data"], run_dir, encoder=encoder, resume=True, progress=progress
            )
            WorldModel.from_pretrained(run_dir).save_pretrained(out / "world_model")
            state["world_model_steps"] = steps
            _write_online(out, state)
        world_model = WorldModel.from_pretrained(out / "world_model").eval()
        starts = dataset_start_states(world_model, state["data"], config.agent.history)
        end = config.agent.steps + (i + 1) * config.online.agent_steps
        training.train_until(end, world_model, starts, progress)  # 3. continue the agent
        evaluation = evaluate(
            env,
            world_model,
            training.agent,
            out / f"eval_{i + 1:03d}",
            episodes=max(config.run.eval_episodes, 1),
            videos=0,
            progress=False,
        )
        state["iterations"].append(
            {
                "iteration": i + 1,
                "episodes": len(LeRobotDataset(state["data"], state_key=None)),
                "return": evaluation["return"],
                "success_rate": evaluation["success_rate"],
            }
        )
        _write_online(out, state)
        log.info(
            "online iteration %d: return %.2f, success %.0f%%",
            i + 1,
            evaluation["return"],
            100 * evaluation["success_rate"],
        )
    return state["iterations"]
