"""`vjepa-world <command>`: parses arguments and calls the library; nothing else lives here.

One spelling per concept across commands (the table in the README's command section, which
tests/test_cli.py checks against every command's --help). Older spellings still parse for one
release, hidden from --help, with a message naming the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings

import torch

from .config import Deprecated

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PLANNER = "planner"  # the --set section of the planner's settings (plan, demo)


def deprecated(message: str) -> None:
    warnings.warn(message, Deprecated, stacklevel=2)


class Renamed(argparse.Action):
    """An old flag kept for one release: a deprecation message, then the new flag's value."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(f"{option_string} is deprecated: use {self.new}")
        setattr(namespace, self.dest, values)


def _encoder(args: argparse.Namespace):
    from .nn import load_encoder

    return load_encoder(args.encoder, preset=args.preset, key=args.key)


def _inputs(args: argparse.Namespace) -> list[str]:
    """--data, or the positional inputs of extract and visualize (the old spelling)."""
    if args.inputs:
        deprecated("video paths as positional arguments are deprecated: pass them to --data")
    inputs = (args.data or []) + args.inputs
    if not inputs:
        raise ValueError("no input videos: pass --data PATH [PATH ...] (files or folders)")
    return inputs


def planner_overrides(pairs: list[str], sections: tuple[str, ...] = (PLANNER,)) -> tuple[dict, list[str]]:
    """--set pairs -> (the planner's changes from `planner.KEY=VALUE`, values YAML; the other pairs,
    of the other `sections`). A flat KEY=VALUE (plan's old spelling) is read as planner.KEY, with a
    deprecation message."""
    from .train.config import parse_overrides

    flat = [pair for pair in pairs if "." not in pair.partition("=")[0]]
    if flat:
        deprecated(f"--set {flat[0]} is deprecated: write --set {PLANNER}.{flat[0]}")
    pairs = [f"{PLANNER}.{pair}" if pair in flat else pair for pair in pairs]
    changes = parse_overrides(pairs, sections).get(PLANNER, {})
    return changes, [pair for pair in pairs if not pair.startswith(f"{PLANNER}.")]


def _extract(args: argparse.Namespace) -> None:
    from .data import find_media
    from .eval import extract_features

    result = extract_features(
        _encoder(args),
        find_media(_inputs(args)),
        frames=args.frames,
        frame_step=args.frame_step,
        clips=args.clips,
        size=args.crop_size,
        pool=None if args.pool == "none" else args.pool,
        batch_size=args.batch_size,
        device=args.device,
        dtype=DTYPES[args.dtype],
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("run", "inputs")}
    path = result.save(args.out, **settings)
    print(
        f"{len(result.features)} clips from {len(result.files) - len(result.skipped)} files "
        f"({len(result.skipped)} skipped) -> {path} {tuple(result.features.shape)} "
        f"in {result.seconds:.1f} s"
    )


def _pretrain(args: argparse.Namespace) -> None:
    from .train.config import load_config
    from .train.pretrain import pretrain

    config = load_config(args.config, args.set)
    summary = pretrain(config, args.data, args.out, resume=args.resume)
    if summary["finished"]:
        print(f"pretrained {summary['steps']} steps, final loss {summary['final_loss']:.4f} -> {args.out}")


def _probe(args: argparse.Namespace) -> None:
    from .eval.probing import FeatureSettings, run_probe

    def report(epoch: int, heads: list[dict]) -> None:
        best = max(heads, key=lambda h: h["epochs"][-1]["top1"])
        top1, top5 = best["epochs"][-1]["top1"], best["epochs"][-1]["top5"]
        print(
            f"epoch {epoch + 1}: best head top-1 {100 * top1:.1f}% top-5 {100 * top5:.1f}% "
            f"(lr {best['lr']:g}, wd {best['weight_decay']:g})"
        )

    features = FeatureSettings(
        args.frames, args.frame_step, args.crop_size, args.clips, args.views, args.layers or []
    )
    summary = run_probe(
        _encoder(args),
        args.train,
        args.val,
        args.out,
        features=features,
        kind=args.probe,
        lrs=tuple(args.lr),
        weight_decays=tuple(args.wd),
        epochs=args.epochs,
        batch_size=args.batch_size,
        num_heads=args.heads,
        augment=args.augment,
        cache=not args.no_cache,
        device=args.device,
        dtype=DTYPES[args.dtype],
        positions=args.positions,
        pool_regions=args.pool_regions,
        on_epoch=report,
    )
    best = summary["best"]
    print(
        f"{args.probe} probe: top-1 {100 * best['top1']:.1f}%, top-5 {100 * best['top5']:.1f}% -> {args.out}"
    )


def _evaluate_future(args: argparse.Namespace) -> None:
    from .eval.future import run_future_evaluation
    from .jepa import saved_frozen_target
    from .nn import MaskedPredictor

    encoder = _encoder(args).eval()
    predictor = MaskedPredictor.from_pretrained(args.predictor or args.encoder).eval()
    target = saved_frozen_target(args.encoder)  # None: the encoder's own tokens
    summary = run_future_evaluation(
        encoder,
        predictor,
        args.data,
        args.out,
        frames=args.frames,
        frame_step=args.frame_step,
        clips=args.clips,
        size=args.crop_size,
        context_steps=args.context_steps,
        mask_index=args.mask_index,
        batch_size=args.batch_size,
        target_encoder=target,
    )
    for method, values in summary["l1"].items():
        print(f"{method:14} L1 by horizon: " + " ".join(f"{v:.4f}" for v in values))


def _visualize(args: argparse.Namespace) -> None:
    from .viz import visualize_videos

    summary = visualize_videos(
        _encoder(args).eval(),
        _inputs(args),
        args.out,
        frames=args.frames,
        frame_step=args.frame_step,
        size=args.crop_size,
    )
    for path, files in summary["videos"].items():
        print(f"{path}: {files['png']} {files['mp4']}")


def _make_dataset(args: argparse.Namespace) -> None:
    from .data.synthetic import write_temporal_dataset

    meta = write_temporal_dataset(
        args.out,
        train=args.train_videos,
        val=args.val_videos,
        frames=args.frames,
        size=args.frame_size,
        seed=args.seed,
    )
    print(
        f"{args.train_videos} + {args.val_videos} videos, tasks {', '.join(meta['tasks'])} -> "
        f"{args.out}/<task>_<split>.csv"
    )


def _collect(args: argparse.Namespace) -> None:
    from .envs import collect_dataset

    summary = collect_dataset(
        args.env,
        args.out,
        args.episodes,
        args.steps,
        policy=args.policy,
        seed=args.seed,
        image_size=args.frame_size,
    )
    print(
        f"{summary['episodes']} episodes, {summary['frames']} frames of {args.env} ({args.policy}) -> "
        f"{args.out} in {summary['seconds']:.1f} s"
    )


def _train_wm(args: argparse.Namespace) -> None:
    from .train.config import WorldModelConfig, load_config
    from .train.world_model import train_world_model

    config = load_config(args.config, args.set, kind=WorldModelConfig)
    encoder = _encoder(args) if args.encoder else None
    summary = train_world_model(config, args.data, args.out, encoder=encoder, resume=args.resume)
    if not summary["finished"]:
        return
    print(f"trained {summary['steps']} steps, final loss {summary['final_loss']:.4f} -> {args.out}")
    for method, values in summary.get("val", {}).get("l1", {}).items():
        print(f"held-out L1 by horizon, {method:16}: " + " ".join(f"{v:.4f}" for v in values))
    if summary.get("warning"):
        print(f"warning: {summary['warning']}")


def _planner_preset(args: argparse.Namespace) -> str:
    """--planner PRESET; plan's old `--planner cem|mppi` (the method) becomes --set planner.method."""
    if args.planner in ("cem", "mppi"):
        deprecated(f"--planner {args.planner} is deprecated: write --set {PLANNER}.method={args.planner}")
        args.set.append(f"{PLANNER}.method={args.planner}")
        return "default"
    return args.planner


def _plan(args: argparse.Namespace) -> None:
    from .config import planner_config
    from .eval.planning import evaluate_planning
    from .world_model import WorldModel

    preset = _planner_preset(args)
    if args.objective:
        args.set.append(f"{PLANNER}.objective={args.objective}")
    config = planner_config(preset, **planner_overrides(args.set)[0])
    world_model = WorldModel.from_pretrained(args.world_model).eval()
    summary = evaluate_planning(
        args.env,
        world_model,
        config,
        args.out,
        episodes=args.episodes,
        seed=args.seed,
        image_size=args.frame_size,
        max_steps=args.steps,
    )
    print(
        f"{args.env}: planning success {100 * summary['success_rate']:.0f}% vs random "
        f"{100 * summary['random_success_rate']:.0f}%, return {summary['return']:.1f} vs "
        f"{summary['random_return']:.1f} over {summary['episodes']} episodes, "
        f"{summary['seconds_per_action']:.3f} s per action (mean) -> {args.out}"
    )


def _train_agent(args: argparse.Namespace) -> None:
    from .eval.agent import evaluate_agent
    from .train.agent import train_agent
    from .train.config import TrainAgentConfig, load_config

    config = load_config(args.config, args.set, kind=TrainAgentConfig)
    summary = train_agent(
        config,
        args.world_model,
        args.out,
        env=args.env,
        evaluate=evaluate_agent,
        data=args.data,
        resume=args.resume,
        online=args.online,
    )
    if not summary["finished"]:
        return
    final = summary["final"]
    print(
        f"trained {summary['steps']} updates in imagination (imagined return {final['return']:.2f}, "
        f"reward per step {final['imagined_reward']:.3f}) -> {args.out}"
    )
    for row in summary["online_iterations"]:
        print(
            f"online iteration {row['iteration']}: {row['episodes']} episodes, return {row['return']:.1f}, "
            f"success {100 * row['success_rate']:.0f}%"
        )
    if "eval" in summary:
        _print_evaluation(summary["eval"])


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .agent import Agent
    from .eval.agent import evaluate_agent
    from .world_model import WorldModel

    run = Path(args.agent)
    agent = Agent.from_pretrained(run)
    world_model = WorldModel.from_pretrained(run / "world_model").eval()
    summary = evaluate_agent(
        args.env,
        world_model,
        agent,
        args.out,
        episodes=args.episodes,
        seed=args.seed,
        image_size=args.frame_size,
        max_steps=args.steps,
        videos=args.videos,
        compiled=args.compiled,
    )
    _print_evaluation(summary)
    print(f"-> {args.out}")


def _export_policy(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .agent import Agent
    from .policy_export import POLICY_PACKAGE, export_policy
    from .world_model import WorldModel

    run = Path(args.agent)
    agent = Agent.from_pretrained(run).eval()
    world_model = WorldModel.from_pretrained(run / "world_model").eval()
    out = Path(args.out or run / POLICY_PACKAGE)
    policy = export_policy(world_model, agent, out, frame_size=(args.frame_size, args.frame_size))
    print(
        f"compiled the policy for {args.frame_size}x{args.frame_size} frames (a decision every "
        f"{policy.frame_skip} steps) -> {out}"
    )


def _print_evaluation(summary: dict) -> None:
    print(f"\n{summary['env']}, {summary['episodes']} episodes{'':4}{'agent':>10}{'random':>10}")
    rows = [
        (
            "success rate",
            f"{100 * summary['success_rate']:.0f}%",
            f"{100 * summary['random_success_rate']:.0f}%",
        ),
        ("return", f"{summary['return']:.1f}", f"{summary['random_return']:.1f}"),
        ("seconds per action", f"{summary['seconds_per_action']:.5f}", "-"),
    ]
    for name, agent, random in rows:
        print(f"{name:34}{agent:>10}{random:>10}")


def _demo(args: argparse.Namespace) -> None:
    from .demo import DemoSettings, run_demo
    from .train.config import WorldModelConfig

    sections = (*(f.name for f in dataclasses.fields(WorldModelConfig)), PLANNER)
    changes, training = planner_overrides(args.set, sections)
    settings = (DemoSettings.smoke if args.smoke else DemoSettings)(env=args.env, planner=args.planner)
    settings.planner_changes |= changes
    settings.training += training
    for name in ("episodes", "plan_episodes"):
        if getattr(args, name):
            setattr(settings, name, getattr(args, name))
    summary = run_demo(args.out, settings)
    rows = [
        (
            "success rate",
            f"{100 * summary['success_rate']:.0f}%",
            f"{100 * summary['random_success_rate']:.0f}%",
        ),
        ("final distance", f"{summary['final_distance']:.3f}", f"{summary['random_final_distance']:.3f}"),
        ("s per env step", f"{summary['seconds_per_action']:.3f}", "-"),
    ]
    print(f"\n{'':20}{'planning':>10}{'random':>10}")
    for name, planned, random in rows:
        print(f"{name:20}{planned:>10}{random:>10}")
    print(f"report: {summary['report']}")


# ---------------------------------------------------------------------------- the parser


def add_encoder_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--encoder, --preset, --key: where an encoder comes from (shared by several commands)."""
    parser.add_argument(
        "--encoder",
        required=required,
        help="official .pt file, Hugging Face VJEPA2 directory, a directory we saved (a pretraining run), "
        "or random:PRESET for randomly initialised weights",
    )
    parser.add_argument(
        "--preset", help="architecture preset of --encoder, when the checkpoint's cannot be inferred"
    )
    parser.add_argument("--key", help="network of an official .pt: target_encoder (default) or encoder")


def add_set_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """--set (repeatable): overrides of a command's settings (shared by several commands)."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help=f"{help} (repeatable)"
    )


def add_data_arg(parser: argparse.ArgumentParser, help: str, many: bool = False) -> None:
    """--data: the input videos or dataset."""
    parser.add_argument("--data", required=not many, nargs="+" if many else None, help=help)


def add_clip_args(parser: argparse.ArgumentParser) -> None:
    """--frames, --frame-step, --crop-size: how clips are cut from videos."""
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--frame-step", type=int, default=4, help="take every k-th frame (default 4)")
    parser.add_argument("--crop-size", type=int, help="side of the encoder's square crop (default: its own)")
    parser.add_argument("--size", dest="crop_size", type=int, action=Renamed, new="--crop-size")


def add_frame_size_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """--frame-size: the side of the frames a command renders or generates."""
    parser.add_argument("--frame-size", type=int, default=64, help=f"{help} (default 64)")
    parser.add_argument("--size", dest="frame_size", type=int, action=Renamed, new="--frame-size")


def add_planner_arg(parser: argparse.ArgumentParser) -> None:
    """--planner: the planner preset (plan, demo); --preset, its old spelling there."""
    from .config import PLANNER_PRESETS

    presets = ", ".join(PLANNER_PRESETS)
    parser.add_argument("--planner", default="default", help=f"planner preset: {presets} (default: default)")
    parser.add_argument("--preset", dest="planner", action=Renamed, new="--planner")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vjepa-world", description="V-JEPA 2 as a world model.")
    commands = parser.add_subparsers(dest="command", required=True)

    extract = commands.add_parser(
        "extract",
        help="encode videos or images into features",
        description="Encode clips of each video (or images) with a V-JEPA 2 encoder; writes "
        "OUT/features.safetensors (rows = clips, with the file of each row) and OUT/summary.json.",
    )
    add_encoder_args(extract)
    add_clip_args(extract)
    add_data_arg(extract, "video/image files or folders (searched recursively)", many=True)
    extract.add_argument("inputs", nargs="*", help=argparse.SUPPRESS)  # the old spelling of --data
    extract.add_argument("--out", required=True, help="output directory")
    extract.add_argument("--pool", choices=["none", "frame", "mean"], default="mean", help="default: mean")
    extract.add_argument(
        "--clips", type=int, default=1, help="clips per video, evenly spaced; 0 = all windows"
    )
    extract.add_argument("--batch-size", type=int, default=4)
    extract.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    extract.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="bfloat16 is the fast path on modern CPUs"
    )
    extract.set_defaults(run=_extract)

    pretrain = commands.add_parser(
        "pretrain",
        help="self-supervised V-JEPA pretraining on your videos",
        description="Pretrain a V-JEPA model (context encoder, predictor, EMA target). Writes into OUT: "
        "checkpoint.pt, log.jsonl, tensorboard/, and at the end the target encoder + predictor "
        "(config.json, model.safetensors) and summary.json. Runs under torchrun for several processes.",
    )
    pretrain.add_argument("--config", help="YAML config (see configs/pretrain/); default: built-in defaults")
    add_data_arg(pretrain, "folder of videos/images, a path[,label] CSV, or a file")
    pretrain.add_argument("--out", required=True, help="run directory")
    add_set_arg(pretrain, "override a config value (sections model, data, optim, run)")
    pretrain.add_argument(
        "--resume", action="store_true", help="continue the run in OUT from its last checkpoint"
    )
    pretrain.set_defaults(run=_pretrain)

    probe = commands.add_parser(
        "probe",
        help="train a probe on frozen encoder features",
        description="Encode the clips of two path,label CSVs with a frozen encoder (cached in OUT/cache), "
        "train probes for every --lr x --wd on the same batches, report top-1/top-5 per epoch, and write "
        "OUT/probe.pt (the best head, released probe layout) and OUT/summary.json.",
    )
    add_encoder_args(probe)
    add_clip_args(probe)
    probe.add_argument("--train", required=True, help="path,label CSV (or folder) of training videos")
    probe.add_argument("--val", required=True, help="path,label CSV (or folder) of validation videos")
    probe.add_argument("--out", required=True, help="output directory")
    probe.add_argument("--probe", choices=["attentive", "linear", "knn"], default="attentive")
    probe.add_argument("--epochs", type=int, default=20)
    probe.add_argument(
        "--lr", type=float, nargs="+", default=[1e-3, 3e-4], help="learning rates (one head each)"
    )
    probe.add_argument("--wd", type=float, nargs="+", default=[0.01, 0.1], help="weight decays (x each lr)")
    probe.add_argument("--heads", type=int, default=16, help="attention heads of the attentive probe")
    probe.add_argument(
        "--positions",
        action="store_true",
        help="add each token's (t, h, w) to the attentive probe's input (RoPE-only tokens lack them)",
    )
    probe.add_argument(
        "--pool-regions",
        type=int,
        metavar="R",
        help="attentive probe on each step's tokens averaged over R x R regions (the cheaper token path)",
    )
    probe.add_argument("--clips", type=int, default=1, help="clips per video, predictions averaged per video")
    probe.add_argument(
        "--views", type=int, default=1, help="spatial crops per validation clip (upstream: 3), averaged"
    )
    probe.add_argument("--layers", type=int, nargs="*", help="encoder blocks whose tokens are concatenated")
    probe.add_argument("--batch-size", type=int, default=16)
    probe.add_argument("--device", default="cpu")
    probe.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="bfloat16: encode and train heads in bf16"
    )
    probe.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    probe.add_argument(
        "--augment",
        action="store_true",
        help="random crops and flips of the training clips, encoded afresh every epoch (slower: no cache)",
    )
    probe.set_defaults(run=_probe)

    future = commands.add_parser(
        "evaluate-future",
        help="score predicted future latents per horizon against baselines",
        description="Observe the first --context-steps tubelet steps of each clip, predict the latents "
        "of the later steps with the predictor, and report L1 and cosine error per horizon against "
        "copying the last observed step and the mean of the observed steps. Writes OUT/summary.json "
        "and plots.",
    )
    add_encoder_args(future)
    add_clip_args(future)
    future.add_argument("--predictor", help="predictor checkpoint (default: the --encoder directory)")
    add_data_arg(future, "folder of videos or a CSV")
    future.add_argument("--out", required=True, help="output directory")
    future.add_argument("--context-steps", type=int, help="observed tubelet steps (default: half the clip)")
    future.add_argument(
        "--mask-index",
        type=int,
        help="predictor mask token to use (default: the future mask the predictor was trained with)",
    )
    future.add_argument("--clips", type=int, default=1, help="clips per video")
    future.add_argument("--batch-size", type=int, default=8)
    future.set_defaults(run=_evaluate_future)

    visualize = commands.add_parser(
        "visualize",
        help="PCA of patch tokens as colours, beside the input frames",
        description="For one clip of each video: the first 3 principal components of the encoder's patch "
        "tokens as RGB, frame by frame, written as OUT/<name>.png (a grid) and OUT/<name>.mp4, and "
        "OUT/summary.json.",
    )
    add_encoder_args(visualize)
    add_clip_args(visualize)
    add_data_arg(visualize, "video/image files or folders", many=True)
    visualize.add_argument("inputs", nargs="*", help=argparse.SUPPRESS)  # the old spelling of --data
    visualize.add_argument("--out", required=True, help="output directory")
    visualize.set_defaults(run=_visualize)

    dataset = commands.add_parser(
        "make-dataset",
        help="write the built-in temporal-reasoning video dataset",
        description="Generated videos of moving objects whose labels need time to infer (direction and speed "
        "of motion, which object bounces first, number of bounces), with a path,label CSV per task and "
        "split (OUT/<task>_<split>.csv) and OUT/meta.json. Rerunning with the same settings reuses it. "
        "Probe it with --frame-step 1.",
    )
    dataset.add_argument("--out", required=True, help="output directory")
    dataset.add_argument("--train-videos", type=int, default=200, help="training videos (default 200)")
    dataset.add_argument("--val-videos", type=int, default=100, help="validation videos (default 100)")
    dataset.add_argument("--train", dest="train_videos", type=int, action=Renamed, new="--train-videos")
    dataset.add_argument("--val", dest="val_videos", type=int, action=Renamed, new="--val-videos")
    dataset.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    add_frame_size_arg(dataset, "side of the generated frames in pixels")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.set_defaults(run=_make_dataset)

    collect = commands.add_parser(
        "collect",
        help="roll a policy in an environment and write a LeRobot v2 dataset",
        description="Run --episodes episodes of up to --steps steps of a data-collection policy (episode i "
        "seeded --seed + i) and write them in the LeRobot v2 layout into OUT (meta/, data/, videos/), "
        "plus OUT/summary.json.",
    )
    collect.add_argument(
        "--env", default="vjepa_world/ReacherGoal-v0", help="registered gymnasium id or module:ClassName"
    )
    collect.add_argument(
        "--episodes", type=int, default=1600, help="default 1600 (the demo collects 400)"
    )  # envs.DEFAULT_EPISODES
    collect.add_argument(
        "--steps", type=int, help="steps per episode (default: the environment's time limit, else 50)"
    )
    collect.add_argument(
        "--policy",
        choices=["random", "hold", "ou-noise", "mixed", "zero"],  # envs.POLICIES (not imported: slow)
        default="mixed",  # envs.DEFAULT_POLICY
        help="default mixed: each episode uniform random or OU noise (see README)",
    )
    collect.add_argument("--seed", type=int, default=0)
    add_frame_size_arg(collect, "side of the rendered frames in pixels")
    collect.add_argument("--out", required=True, help="dataset directory")
    collect.set_defaults(run=_collect)

    train_wm = commands.add_parser(
        "train-wm",
        help="train an action-conditioned world model on a LeRobot dataset",
        description="Train an action-conditioned world model. model.encoder_training: joint (default: "
        "encoder, projector to one latent vector per frame, state head and predictor from scratch, end to "
        "end, with SIGReg), finetune (the --encoder, or one V-JEPA-pretrained on the dataset, trained "
        "further) or frozen (V-JEPA 2-AC: the predictor on the encoder's cached tokens). Teacher-forcing "
        "+ rollout loss; writes checkpoint.pt, log.jsonl, tensorboard/, and at the end the world model "
        "(loadable with WorldModel.from_pretrained, carrying its frame skip and history) and summary.json "
        "with the held-out rollout error per horizon. Runs under torchrun for several processes.",
    )
    add_data_arg(train_wm, "LeRobot v2 dataset directory (vjepa-world collect)")
    train_wm.add_argument("--out", required=True, help="run directory")
    add_encoder_args(train_wm, required=False)
    train_wm.add_argument(
        "--config", help="YAML config with model/data/loss/encoder/distance/optim/run sections"
    )
    add_set_arg(train_wm, "override a config value, e.g. optim.steps=500 loss.rollout_steps=3")
    train_wm.add_argument("--resume", action="store_true", help="continue the run in OUT")
    train_wm.set_defaults(run=_train_wm)

    plan = commands.add_parser(
        "plan",
        help="plan toward goal images or rewards with a world model (MPC), against a random policy",
        description="Closed-loop episodes: encode the goal image (unless --objective reward: the predicted "
        "return), plan with CEM or MPPI over the world model's rollouts, execute, replan. Reports success "
        "rate, return, final distance and planning seconds per action against random actions from the "
        "same starts; writes OUT/episode_XXX.mp4 (observation | "
        "goal), OUT/energy_by_iteration.png and OUT/summary.json.",
    )
    plan.add_argument("--env", default="vjepa_world/ReacherGoal-v0", help="registered id or module:ClassName")
    plan.add_argument("--world-model", required=True, help="a train-wm run directory")
    plan.add_argument("--episodes", type=int, default=50)
    plan.add_argument("--out", required=True, help="output directory")
    add_planner_arg(plan)
    plan.add_argument(
        "--objective",
        choices=["latent", "state", "distance", "reward"],
        help="what plans are scored by (default: the preset's): reward needs no goal image",
    )
    add_set_arg(plan, "override a planner setting, e.g. planner.samples=200 planner.method=mppi")
    plan.add_argument("--seed", type=int, default=10_000, help="episode i resets with seed + i")
    add_frame_size_arg(plan, "side of the observations in pixels")
    plan.add_argument("--steps", type=int, help="steps per episode (default: the env's time limit)")
    plan.set_defaults(run=_plan)

    train_agent = commands.add_parser(
        "train-agent",
        help="learn a policy inside a trained world model (actor-critic in imagination)",
        description="Train an actor and a critic on rollouts imagined by the world model of a train-wm run "
        "(rewards from its reward head), starting from the latents of its dataset; evaluate the policy "
        "against random actions in --env. Writes OUT/agent.json + agent.safetensors, OUT/world_model/, "
        "checkpoint.pt, log.jsonl, OUT/eval/ and summary.json. --online then repeats: collect with the "
        "policy, continue training the world model and the agent (online.* settings); --resume continues "
        "a killed run.",
    )
    train_agent.add_argument(
        "--world-model", required=True, help="a train-wm run directory (with a reward head)"
    )
    train_agent.add_argument("--env", help="environment to evaluate (and, --online, collect) in")
    train_agent.add_argument("--out", required=True, help="run directory")
    train_agent.add_argument(
        "--data", help="start states' dataset (default: the one the world model trained on)"
    )
    train_agent.add_argument("--config", help="YAML config with agent/online/run sections")
    add_set_arg(train_agent, "override a config value, e.g. agent.steps=500 online.iterations=2")
    train_agent.add_argument("--online", action="store_true", help="collect, retrain and repeat (online.*)")
    train_agent.add_argument("--resume", action="store_true", help="continue the run in OUT")
    train_agent.set_defaults(run=_train_agent)

    evaluate = commands.add_parser(
        "evaluate",
        help="run a trained agent in an environment against random actions",
        description="Closed-loop episodes of a train-agent run's policy (acting from pixels) and of random "
        "actions from the same starts; reports return, success and seconds per action, writes "
        "OUT/episode_XXX.mp4 and OUT/summary.json.",
    )
    evaluate.add_argument("--agent", required=True, help="a train-agent run directory")
    evaluate.add_argument("--env", required=True, help="registered id or module:ClassName")
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--out", required=True, help="output directory")
    evaluate.add_argument("--seed", type=int, default=10_000, help="episode i resets with seed + i")
    add_frame_size_arg(evaluate, "side of the observations in pixels")
    evaluate.add_argument("--steps", type=int, help="steps per episode (default: the env's time limit)")
    evaluate.add_argument("--videos", type=int, default=4, help="episodes written as videos (default 4)")
    evaluate.add_argument(
        "--compiled",
        action="store_true",
        help="act with the decision compiled ahead of time (export-policy's package, into OUT/policy.pt2)",
    )
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export-policy",
        help="compile a trained agent's policy into one package for this kind of machine",
        description="torch.export + AOTInductor: the decision from pixels (encoder, state reading, "
        "actor's mode) as one compiled package, loaded with "
        "vjepa_world.policy_export.CompiledPolicy(PATH) and acted with AgentPolicy(CompiledPolicy(PATH)). "
        "Needs a C++ compiler; the package runs on machines with the same instruction set, on frames of "
        "--frame-size.",
    )
    export.add_argument("--agent", required=True, help="a train-agent run directory")
    export.add_argument("--out", help="the package (default: AGENT/policy.pt2)")
    add_frame_size_arg(export, "side of the observations in pixels")
    export.set_defaults(run=_export_policy)

    demo = commands.add_parser(
        "demo",
        help="the main job: collect data, train a world model, plan to goal images, report",
        description="Collect episodes (collect's default policy), train an action-conditioned world model "
        "on their pixels (train-wm), then plan toward goal images against a random policy "
        "and write OUT/report.md. Rerunning reuses finished stages and resumes training.",
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--env", default="vjepa_world/ReacherGoal-v0")
    demo.add_argument("--episodes", type=int, help="training episodes to collect (default 400)")
    demo.add_argument("--plan-episodes", type=int, help="planning episodes (default 50)")
    add_planner_arg(demo)
    add_set_arg(demo, "override a train-wm config value or a planner setting (planner.KEY=VALUE)")
    demo.add_argument("--smoke", action="store_true", help="a seconds-long run of every stage (for tests)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with warnings.catch_warnings():
        warnings.simplefilter("always", Deprecated)
        show = warnings.showwarning

        def show_deprecations(message, category, *args, **kwargs):
            if issubclass(category, Deprecated):
                print(f"vjepa-world: deprecated: {message}", file=sys.stderr)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = show_deprecations
        args = build_parser().parse_args(argv)
        try:
            args.run(args)
        except (ValueError, FileNotFoundError) as err:
            print(f"vjepa-world {args.command}: error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
