"""A policy learned inside the world model against planning with its reward head, and uncertain futures.

Part 1, `vjepa_world/ReacherReward-v0` from pixels (touch the red target; reward 1 inside it):
collect episodes (`--policy`: random by default, as the tables were measured), train a world model
with train-wm's defaults (its reward and continuation heads included), then over the same
evaluation starts (episode i seeded 10,000 + i):
- random actions;
- CEM with the reward head (`plan --objective reward`: the predicted return over the horizon);
- the policy trained in imagination (`train-agent`, then its mode from pixels: `evaluate`);
- the same policy continued online (`train-agent --online`, `--online` iterations: collect 50
  episodes with the policy, continue the world model and the agent), and CEM with the world model
  the online loop ends with, so the policy is also compared with planning on its own model;
- the last policy compiled ahead of time (`evaluate --compiled`: torch.export + AOTInductor), the
  form a robot would run.
Success is inside the target at the episode's end, return the number of steps inside (of 100),
seconds per action the time per environment step (the planner's planning; the policy's encoding
and actor, every frame skip). Targets: the policy reaches >= 80% of planning's success (the better
CEM row) at <= 1/100 of its time per action, and both are clearly above random; printed for the
last policy eager and compiled. The time ratio is also measured in turns (policy and CEM episodes
alternating, `timed_in_turns`), since the rows' seconds, measured minutes apart, carry the
machine's drift.

Part 2, `vjepa_world/ReacherRewardNoisy-v0` (torque disturbances, a target that jumps): a world
model trained with the stochastic latent (categorical 32 x 32) and the ensemble fitted, plus a
Gaussian latent fitted on the same model; the held-out negative log-likelihood (nats per latent
dimension) and 90% coverage of the future latents per horizon against the deterministic model
(`eval/uncertainty.py`). Target: the stochastic model's likelihood beats the deterministic one's.

Every stage is reused when rerun with the same --out (a larger `--online` continues the loop).
Success comes with its binomial standard error: 30 episodes leave up to 9 points either way (one
run read the policy's ratio to planning as 0.76 from 30 episodes, 0.53 from 100);
`--eval-episodes 100` narrows it to ~5 points, at ~9 minutes per CEM row. The policy's ratio to
planning comes with a paired bootstrap interval over the shared starts (`success_ratio_interval`).

    python benchmarks/agent_quality.py --part 1              # 20-55 min (2-core machines differ)
    python benchmarks/agent_quality.py --part 2              # about 15 minutes
    python benchmarks/agent_quality.py --smoke --out /tmp/aq  # checks the script (12 min for part 1)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import statistics
import time
from pathlib import Path

import torch

from vjepa_world.agent import Agent
from vjepa_world.data.episodes import STATE_KEY, LeRobotDataset, SequenceDataset, write_lerobot_dataset
from vjepa_world.demo import SMOKE_TRAINING
from vjepa_world.envs import POLICIES, REACHER_NOISY_ID, REACHER_REWARD_ID, collect_episodes
from vjepa_world.eval.agent import evaluate_agent, success_ratio_interval
from vjepa_world.eval.planning import evaluate_planning
from vjepa_world.eval.uncertainty import future_likelihood
from vjepa_world.planning import planner_config
from vjepa_world.policy_export import POLICY_PACKAGE, CompiledPolicy
from vjepa_world.train.agent import train_agent
from vjepa_world.train.config import TrainAgentConfig, WorldModelConfig, build_config
from vjepa_world.train.uncertainty import fit_uncertainty
from vjepa_world.train.world_model import encode_dataset, split_episodes, train_world_model
from vjepa_world.world_model import WorldModel

STEPS = 100  # environment steps per episode: the registered time limit
ONLINE_EPISODES = 50  # collected with the policy per online iteration (train-agent's default)


def collected(out: Path, env: str, episodes: int, policy: str) -> Path:
    if not (out / "meta" / "info.json").exists():
        recorded = collect_episodes(env, episodes, STEPS, policy=policy, progress=False)
        write_lerobot_dataset(out, recorded, progress=False)
    return out


def trained(run: Path, data: Path, settings: list[str]) -> dict:
    """train-wm's summary (reused when `run` holds a finished one)."""
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text())
    config = build_config({}, settings, kind=WorldModelConfig)
    return train_world_model(config, data, run, resume=(run / "checkpoint.pt").exists())


def cached(path: Path, compute) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def part_one(out: Path, args, training: list[str]) -> list[tuple]:
    data = collected(out / "data", REACHER_REWARD_ID, args.episodes, args.policy)
    no_futures = [s for s in training if not s.startswith("uncertainty.")]  # part 1 samples no futures
    ensemble = 5 if args.pessimism else 0  # the agent's penalty needs the ensemble's disagreement
    trained(out / "wm", data, [*no_futures, "uncertainty.kind=none", f"uncertainty.ensemble={ensemble}"])
    world_model = WorldModel.from_pretrained(out / "wm").eval()
    planner = planner_config(args.preset, objective="reward", horizon=args.horizon)

    def planning(model, name: str) -> dict:  # CEM with the reward head, cached in OUT/name.json
        return cached(
            out / f"{name}.json",
            lambda: evaluate_planning(
                REACHER_REWARD_ID, model, planner, out / name, episodes=args.eval_episodes, videos=2
            ),
        )

    plan = planning(world_model, "plan")
    agent_settings = [
        f"agent.steps={args.agent_steps}",
        "agent.precision=bfloat16",  # the imagined steps: about 2x faster here (AVX-512 BF16)
        f"run.eval_episodes={args.eval_episodes}",
        f"agent.pessimism={args.pessimism}",
    ]
    offline_settings = [s for s in args.agent_set if not s.startswith("online.")]  # refused offline
    cached(  # trained once; its row reads the evaluation's summary, which keeps each episode
        out / "agent.json",
        lambda: train_agent(
            build_config({}, agent_settings + offline_settings, kind=TrainAgentConfig),
            out / "wm",
            out / "agent",
            env=REACHER_REWARD_ID,
            evaluate=evaluate_agent,
            resume=(out / "agent" / "checkpoint.pt").exists(),
        ),
    )
    rows = [
        ("random actions", plan["random_success_rate"], plan["random_return"], None, None),
        ("CEM, reward head", *_row(plan)),
        ("policy, offline", *_row(_evaluation(out / "agent"))),
    ]
    if not args.online:
        return [*rows, ("policy, offline, compiled ahead of time", *_row(compiled(out, args, "agent")))]
    _forget_a_shorter_online_loop(out, args.online)
    cached(out / "agent_online.json", lambda: _online(out, args, agent_settings))
    replan = planning(WorldModel.from_pretrained(out / "agent_online" / "world_model").eval(), "plan_online")
    return [
        *rows,
        (
            f"policy, online ({args.online} x {ONLINE_EPISODES} episodes)",
            *_row(_evaluation(out / "agent_online")),
        ),
        ("CEM, reward head, the online world model", *_row(replan)),
        ("policy, online, compiled ahead of time", *_row(compiled(out, args, "agent_online"))),
    ]


def compiled(out: Path, args, run: str) -> dict:
    """The evaluation of a train-agent run's policy compiled ahead of time (`evaluate --compiled`),
    from the same starts."""
    return cached(
        out / f"{run}_compiled.json",
        lambda: evaluate_agent(
            REACHER_REWARD_ID, WorldModel.from_pretrained(out / run / "world_model").eval(),
            Agent.from_pretrained(out / run).eval(), out / f"{run}_compiled", episodes=args.eval_episodes,
            videos=2, compiled=True,
        ),
    )  # fmt: skip


def timed_in_turns(out: Path, args, rounds: int = 3) -> dict[str, float]:
    """Seconds per action of the last policy (eager, and compiled: the package its compiled row
    wrote) and of CEM on that policy's world model, measured in turns (3 episodes of each policy,
    then 1 planned one, `rounds` times; medians): the machine's speed drifts within a sitting by up
    to 2x, and rows measured minutes apart carry that drift."""
    run = out / ("agent_online" if args.online else "agent")
    world_model = WorldModel.from_pretrained(run / "world_model").eval()
    agent = Agent.from_pretrained(run).eval()
    actors = {
        "policy": (evaluate_agent, agent, 3),
        "compiled": (evaluate_agent, CompiledPolicy(out / f"{run.name}_compiled" / POLICY_PACKAGE), 3),
        "CEM": (evaluate_planning, planner_config(args.preset, objective="reward", horizon=args.horizon), 1),
    }
    seconds = {name: [] for name in actors}
    for i in range(rounds):  # seeds 20,000+: starts no table uses
        for name, (evaluate, acting, episodes) in actors.items():
            summary = evaluate(
                REACHER_REWARD_ID, world_model, acting, out / "timing", episodes=episodes,
                seed=20_000 + 3 * i, videos=0, progress=False,
            )  # fmt: skip
            seconds[name].append(summary["seconds_per_action"])
    return {name: statistics.median(values) for name, values in seconds.items()}


def _evaluation(run: Path) -> dict:
    """A train-agent run's evaluation summary, with each episode (the run's own summary drops them)."""
    return json.loads((run / "eval" / "summary.json").read_text())


def _row(summary: dict) -> tuple:
    """Success, return, seconds per action and each episode's success of a plan or evaluate summary."""
    successes = [episode["success"] for episode in summary["per_episode"]]
    return summary["success_rate"], summary["return"], summary["seconds_per_action"], successes


def _forget_a_shorter_online_loop(out: Path, iterations: int) -> None:
    """A rerun with more `--online` iterations continues the loop (its summary, CEM and compiled
    rows are recomputed); one with fewer cannot undo iterations and is refused."""
    summary = out / "agent_online.json"
    if not summary.exists():
        return
    done = len(json.loads(summary.read_text())["online_iterations"])
    if done > iterations:
        raise SystemExit(
            f"{out} holds an online loop of {done} iterations: pass --online {done} or a new --out"
        )
    if done < iterations:
        summary.unlink()
        (out / "plan_online.json").unlink(missing_ok=True)
        (out / "agent_online_compiled.json").unlink(missing_ok=True)


def _online(out: Path, args, agent_settings: list[str]) -> dict:
    """`train-agent --online`, continuing the offline agent (a copy of its run) for `args.online`
    iterations: collect with the policy, continue the world model on the grown data, then the agent."""
    run = out / "agent_online"
    if not (run / "checkpoint.pt").exists():
        skip = shutil.ignore_patterns("eval", "summary.json")
        shutil.copytree(out / "agent", run, ignore=skip, dirs_exist_ok=True)
    settings = [*agent_settings, f"online.iterations={args.online}", f"online.episodes={ONLINE_EPISODES}"]
    return train_agent(
        build_config({}, settings + args.agent_set, kind=TrainAgentConfig),
        out / "wm",
        run,
        env=REACHER_REWARD_ID,
        evaluate=evaluate_agent,
        resume=True,
        online=True,
    )


def part_two(out: Path, args, training: list[str]) -> dict:
    data = collected(out / "data", REACHER_NOISY_ID, args.episodes, args.policy)
    summary = trained(out / "wm", data, training)
    world_model = WorldModel.from_pretrained(out / "wm").eval()
    config = build_config({}, training, kind=WorldModelConfig)
    context, horizon = config.loss.rollout_context, config.data.eval_horizon
    use_states = STATE_KEY in LeRobotDataset(data, state_key=None).features
    features = encode_dataset(world_model, data, out / "wm" / "features", progress=False)
    train_episodes, val_episodes = split_episodes(data, config.data.val_fraction)
    window = dict(frame_skip=config.data.frame_skip, state_key=STATE_KEY if use_states else None)
    categorical = world_model.stochastic

    def gaussian_head():
        gaussian = dataclasses.replace(config.uncertainty, kind="gaussian", ensemble=0)
        shape = window | {"sequence_length": config.data.sequence_length}
        return fit_uncertainty(world_model, data, features, train_episodes, gaussian, shape, config.run.seed)[
            0
        ]

    def likelihood(head) -> dict:
        world_model.stochastic = head
        length = context + 1 + horizon
        make = lambda episodes: SequenceDataset(
            data, length, episodes=episodes, features=features, keep_episodes=len(episodes), **window
        )
        return future_likelihood(
            world_model, make(val_episodes), make(train_episodes[: len(val_episodes)]),
            context=context, horizon=horizon, samples=args.samples, use_states=use_states,
            stride=args.stride,
        )  # fmt: skip

    results = {"categorical": cached(out / "likelihood_categorical.json", lambda: likelihood(categorical))}
    if not (out / "likelihood_gaussian.json").exists():
        head = gaussian_head()
        results["gaussian"] = cached(out / "likelihood_gaussian.json", lambda: likelihood(head))
    else:
        results["gaussian"] = json.loads((out / "likelihood_gaussian.json").read_text())
    results["val"] = summary.get("val", {})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/bench-agent-quality")
    parser.add_argument("--episodes", type=int, default=400, help="training episodes per task")
    parser.add_argument(
        "--policy", default="random", choices=POLICIES, help="collection policy (random: as measured)"
    )
    parser.add_argument("--eval-episodes", type=int, default=30)
    parser.add_argument("--agent-steps", type=int, default=1000, help="agent updates in imagination")
    parser.add_argument(
        "--online", type=int, default=3, help="online iterations after the offline agent (0: none)"
    )
    parser.add_argument(
        "--agent-set", action="append", default=[], help="more agent settings (section.key=value)"
    )
    parser.add_argument(
        "--pessimism", type=float, default=0.0, help="agent.pessimism (> 0 trains part 1's ensemble)"
    )
    parser.add_argument("--preset", default="default", help="planner preset of CEM")
    parser.add_argument("--horizon", type=int, default=3, help="CEM's horizon in model steps")
    parser.add_argument("--samples", type=int, default=32, help="futures drawn per window (part 2)")
    parser.add_argument("--stride", type=int, default=5, help="every k-th held-out window (part 2)")
    parser.add_argument("--set", action="append", default=[], help="train-wm settings of both world models")
    parser.add_argument("--part", type=int, choices=[1, 2], action="append", help="default: both")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models: checks the script, not the figures"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 when other processes share the cores)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    training = ["distance.steps=0", *(SMOKE_TRAINING if args.smoke else []), *args.set]
    started = time.perf_counter()
    parts = args.part or [1, 2]
    if 1 in parts:
        rows = part_one(out / "reward", args, training)
        print(f"\n{REACHER_REWARD_ID}, {args.eval_episodes} episodes of {STEPS} steps, the same starts:\n")
        print("| actions from | success (± s.e.) | return (steps inside, of 100) | seconds per action |")
        print("|---|---|---|---|")
        for name, success, ret, seconds, _ in rows:
            seconds_text = "-" if seconds is None else f"{seconds:.5f}"
            error = 100 * math.sqrt(success * (1 - success) / args.eval_episodes)  # binomial
            print(f"| {name} | {success:.0%} ± {error:.0f} | {ret:.1f} | {seconds_text} |")
        best = max((row for row in rows if row[0].startswith("CEM")), key=lambda row: row[1])
        timed = timed_in_turns(out / "reward", args)
        policies = [row for row in rows if row[0].startswith("policy")]
        for policy in policies[-2:]:  # the last policy, eager then compiled
            acting = timed["compiled" if "compiled" in policy[0] else "policy"]
            success = "- (planning never succeeded)"
            if best[1]:
                low, high = success_ratio_interval(policy[4], best[4])
                success = f"{policy[1] / best[1]:.2f} (90% paired bootstrap interval {low:.2f}-{high:.2f})"
            print(
                f"\n{policy[0]} / the best planning: success {success} (target >= 0.80), "
                f"time per action 1/{best[3] / policy[3]:.0f} from the rows, 1/{timed['CEM'] / acting:.0f} "
                f"timed in turns ({acting:.5f} s against {timed['CEM']:.4f} s; target <= 1/100)"
            )
    if 2 in parts:
        results = part_two(out / "noisy", args, training)
        print(f"\n{REACHER_NOISY_ID}: held-out NLL (nats per latent dimension) and 90% coverage, h = 1..H:\n")
        print("| model | NLL by horizon | coverage by horizon |")
        print("|---|---|---|")
        rows = [("deterministic (fitted Gaussian)", results["categorical"], "deterministic")]
        rows += [("stochastic, categorical 32 x 32", results["categorical"], "stochastic")]
        rows += [("stochastic, Gaussian 32-d", results["gaussian"], "stochastic")]
        rows += [("ensemble of 5 heads", results["categorical"], "ensemble")]
        for name, result, kind in rows:
            if kind in result["nll"]:
                nll = " ".join(f"{v:.3f}" for v in result["nll"][kind])
                coverage = " ".join(f"{v:.2f}" for v in result["coverage90"][kind])
                print(f"| {name} | {nll} | {coverage} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
