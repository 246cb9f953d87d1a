"""Training configuration: YAML files with `model`, `data`, `optim` and `run` sections, plus
`--set section.key=value` overrides from the command line.

Every key a command accepts acts, or is refused: `inert_keys` names the keys that have no effect
in a given run (e.g. `optim.final_lr` without a decay, `encoder.*` when train-wm is given an
encoder), and `refuse_inert_keys` turns any of them set away from its default into a one-line error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..agent import AgentConfig
from ..config import check_keys
from ..jepa import VJEPAConfig


@dataclass
class DataConfig:
    frame_step: int = 4  # take every k-th frame...
    fps: float | None = None  # ...or sample at this rate (overrides frame_step)
    clips_per_video: int = 1
    crop_scale: tuple[float, float] = (0.3, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.35)
    num_workers: int = 2


@dataclass
class OptimConfig:
    batch_size: int = 8  # clips per optimizer step, over all processes and accumulation steps
    grad_accum: int = 1
    steps: int | None = 1000  # train-wm: None, chosen from the data (1,000; 4,000 without states)
    lr: float = 5.25e-4
    start_lr: float = 1e-4
    final_lr: float = 1e-6
    warmup_steps: int = 100
    decay_steps: int = 0  # linear decay to final_lr over the last decay_steps (0: stay constant)
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None
    # target-encoder momentum, first -> last step; null for an online target (model.target=online)
    ema: tuple[float, float] | None = (0.99925, 0.99925)
    # pretraining: steps at the start in which only the predictor learns (the context encoder gets
    # no update): a predictor that has learned to read the encoder passes it useful gradients
    encoder_delay: int = 0
    # pretraining: the predictor's lr as a multiple of optim.lr (its whole schedule scaled). A
    # predictor learns to tell its targets' positions apart only after a plateau, shorter at a
    # higher lr (docs/results.md, issue 14)
    predictor_lr_scale: float = 1.0


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"  # auto: the local CUDA device under torchrun, else cuda, else cpu
    precision: str = "float32"  # or "bfloat16" (autocast)
    activation_checkpointing: bool = False
    fsdp: bool = False  # shard parameters (large presets, several GPUs); otherwise DDP
    checkpoint_every: int = 100
    log_every: int = 1


@dataclass
class PretrainConfig:
    model: VJEPAConfig = field(default_factory=VJEPAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: `1e-4` is a number (YAML 1.1 reads it as a
    string, which a learning rate would then carry into the optimizer)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """A YAML document (a config file or one `--set` value), `1e-4` read as a float."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds no Python objects


def _sections(kind: type) -> dict[str, Any]:
    """{section name: its default} of a config made of sections (PretrainConfig, WorldModelConfig)."""
    return {f.name: f.default_factory() for f in dataclasses.fields(kind)}


def parse_overrides(pairs: list[str], sections: Collection[str]) -> dict[str, dict[str, Any]]:
    """["optim.lr=1e-3", "model.preset=vit_small"] -> {"optim": {"lr": 0.001}, ...}; values are YAML,
    and every section must be one of `sections`."""
    nested: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in sections:
            raise ValueError(
                f"--set expects section.key=value with a section in {sorted(sections)}, got {pair!r}"
            )
        nested.setdefault(section, {})[name] = load_yaml(value)
    return nested


def _check_numbers(section: str, default: Any, fields: dict[str, Any]) -> None:
    """A text value for a number field (`--set agent.lr=fast`) is a one-line error, not a crash later."""
    numeric = {f.name for f in dataclasses.fields(default) if str(f.type).split(" ")[0] in ("int", "float")}
    for key, value in fields.items():
        if key in numeric and isinstance(value, str):
            raise ValueError(f"{section}.{key} must be a number, got {value!r}")


def build_config(
    values: dict[str, Any] | None = None, overrides: list[str] | None = None, kind: type = PretrainConfig
):
    """A `kind` config from nested values ({section: {key: value}}) with `--set` overrides applied."""
    sections = _sections(kind)
    values = {k: dict(v or {}) for k, v in (values or {}).items()}
    unknown = set(values) - set(sections)
    if unknown:
        raise ValueError(f"unknown config sections {sorted(unknown)}: use {sorted(sections)}")
    for section, changes in parse_overrides(overrides or [], sections).items():
        values.setdefault(section, {}).update(changes)
    built = {}
    for name, default in sections.items():
        fields = values.get(name, {})
        check_keys(type(default), fields)
        _check_numbers(name, default, fields)
        tuples = {f.name for f in dataclasses.fields(default) if "tuple" in str(f.type)}
        fields = {k: tuple(v) if k in tuples and v is not None else v for k, v in fields.items()}
        built[name] = dataclasses.replace(default, **fields)
    return kind(**built)


def load_config(path: str | Path | None, overrides: list[str] | None = None, kind: type = PretrainConfig):
    """A YAML config file (or the defaults) with `--set` overrides applied."""
    values = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        values = load_yaml(path.read_text()) or {}
    return build_config(values, overrides, kind)


# ---------------------------------------------------------------------------- world-model training


@dataclass
class PredictorSettings:
    # frozen: V-JEPA 2-AC (the encoder's layer-normed tokens are the latents, features cached);
    # finetune: the V-JEPA-pretrained encoder trained further through the dynamics loss;
    # joint: encoder and predictor from scratch, end to end (LeWorldModel). Both trained modes plan
    # on one `latent_dim` vector per frame (a projector on the tokens) kept from collapse by
    # loss.regularizer.
    encoder_training: str = "joint"
    latent_dim: int = 64
    preset: str = "ac_tiny"  # an AC_PRESETS name; the widths below override it when set
    dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    # V-JEPA 2-AC's recipe: observation.state as a token at every observed step (planning then reads
    # info["state"]). None: whenever the dataset has observation.state; true on a dataset without
    # it is an error. Without it the model must infer velocity from the latents of its history.
    use_states: bool | None = None
    # frames per observation: 2 shows the encoder the frame and the one before it as its two-frame
    # tubelet, so a latent holds the velocity the next step depends on (goal images, repeated, are
    # at rest); 1 repeats the frame (V-JEPA 2-AC). None: 1 for a frozen encoder, else 2.
    observation_frames: int | None = None
    # true: a finetune or joint run trains only the predictor and heads; the encoder and projector
    # get no gradient, so the latent space stays where it is (an agent trained on it keeps its inputs)
    freeze_latents: bool = False


@dataclass
class SequenceConfig:
    sequence_length: int = 6  # frames per training window (T): T - 1 transitions
    # env steps between frames, the actions in between concatenated: at 5 a 50 Hz env's actions move
    # the arm pixels per model step instead of a fraction of one (LeWorldModel and DINO-WM use 5)
    frame_skip: int = 5
    val_fraction: float = 0.1  # episodes held out (the last ones) for validation
    eval_horizon: int = 4  # steps of the held-out rollout-error evaluation (after loss.rollout_context)
    encode_batch: int = 64


@dataclass
class LossConfig:
    teacher_forcing: float = 1.0  # weight of the one-step L1 with true latents as context
    rollout: float = 1.0  # weight of the L1 of predictions fed back as context
    rollout_steps: int = 2
    rollout_context: int = 3  # observed steps before the rollout starts (what MPC keeps: velocity)
    # prediction error, l1 or mse; None: l1 on frozen tokens (V-JEPA 2-AC), mse on trained latents (LeWM)
    distance: str | None = None
    # anti-collapse term on the latents of a trained encoder (finetune, joint), with no EMA teacher;
    # a frozen encoder's latents cannot collapse, so setting a weight there is refused
    # weight of the state head's error (decoding observation.state from each frame's latents), the
    # goal energy planning uses by default; 0: no head. Needs model.use_states (the states loaded).
    state_decoding: float = 1.0
    # weight of the inverse-dynamics head's error (the action between two consecutive latents, from
    # them; PLDM): trained encoders only; 0: no head. No gain without proprioception on ReacherGoal
    inverse_dynamics: float = 0.0
    # weight of the frame decoder's error (a 32 px picture of each frame from its latent and from the
    # predictor's teacher-forced latent, Dreamer's reconstruction): trained encoders only; 0: none.
    # Without proprioception it makes the reacher's latent more precise (docs/results.md)
    frame_decoding: float = 0.0
    regularizer: str = "sigreg"  # or vicreg
    regularizer_weight: float | None = None  # None: trained encoders 0.1 with states, 3 without
    # DreamerV3's heads on the latents of the step an action leads to, from next.reward / next.done:
    # the reward (symlog two-hot, 255 bins) and whether the episode goes on (binary); 0: no head
    reward: float = 1.0
    continuation: float = 1.0


@dataclass
class EncoderPretraining:
    """The encoder `train-wm` pretrains on the dataset's frames when it is given none."""

    preset: str = "vit_tiny"
    patch_size: int = 16  # 64 px frames -> 4 x 4 tokens: cheap enough to plan with on a CPU
    depth: int | None = 4  # None: the preset's (vit_tiny: 12); 4 x 128 trains end to end in minutes here
    dim: int | None = 128  # None: the preset's (192); heads follow, keeping the head width
    num_frames: int = 4
    steps: int = 1000  # ~6 min here; at 300 the latents track the pose too loosely to see actions
    batch_size: int = 16
    lr: float = 5e-4


@dataclass
class GoalDistanceConfig:
    """The learned goal energy train-wm fits after the world model (`train/goal_distance.py`)."""

    # optimiser steps of the head (0: no head; None: from the data, `goal_distance.default_steps`): far
    # goals need many (point mass: 3,000 steps plan at 47%, 12,000 at 77%), and more frames need more
    # (1,600 reacher episodes: 12,000 steps 64-80% over three head seeds, 24,000 94-96%; docs/results.md)
    steps: int | None = None
    batch_size: int = 512
    lr: float = 3e-4
    discount: float = 0.98  # per environment step: distances saturate toward 1 / (1 - discount)
    expectile: float = 0.9  # > 0.5 leans on the best transitions: shortest paths, not average ones
    target_ema: float = 0.005  # the target embeddings follow the trained ones at this rate
    goal_mix: tuple[float, float, float] = (0.2, 0.5, 0.3)  # goal = itself, later in its episode, anywhere
    embed_dim: int = 32


@dataclass
class UncertaintyConfig:
    """The uncertainty heads train-wm fits after the world model (`train/uncertainty.py`)."""

    kind: str = "categorical"  # the stochastic latent: categorical (32 x 32), gaussian (32-d) or none
    ensemble: int = 5  # members of the ensemble head (0: none)
    steps: int = 2000  # optimiser steps of each head
    batch_size: int = 256
    lr: float = 3e-4
    dynamics: float = 0.5  # KL balancing (DreamerV3): weight of KL[sg(q) || p], trains the prior
    representation: float = 0.1  # weight of KL[q || sg(p)], keeps the posterior predictable
    free_nats: float = 1.0  # free bits: KL below this many nats is not penalised


def _wm_optim() -> OptimConfig:
    return OptimConfig(
        batch_size=32, steps=None, lr=5e-4, start_lr=1e-4, warmup_steps=100, decay_steps=300, grad_clip=1.0
    )


@dataclass
class WorldModelConfig:
    model: PredictorSettings = field(default_factory=PredictorSettings)
    data: SequenceConfig = field(default_factory=SequenceConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    encoder: EncoderPretraining = field(default_factory=EncoderPretraining)
    distance: GoalDistanceConfig = field(default_factory=GoalDistanceConfig)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)
    optim: OptimConfig = field(default_factory=_wm_optim)
    run: RunConfig = field(default_factory=lambda: RunConfig(checkpoint_every=250, log_every=10))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- keys that would not act

INACTIVE_ENCODER = "sets the encoder train-wm pretrains when it is given none; --encoder gives it one"
JOINT_SKIPS = (
    "sets V-JEPA pretraining, which joint training skips (it trains the encoder from scratch with "
    "optim.*); use model.encoder_training=finetune"
)
FROZEN_ONLY = (
    "acts on trained encoders only (a frozen encoder's latents cannot collapse); use "
    "model.encoder_training=finetune or joint"
)


def _schedule_inert(optim: OptimConfig) -> dict[str, str]:
    inert = {}
    if not optim.decay_steps:
        inert["optim.final_lr"] = "is where the lr decays to, and optim.decay_steps 0 has no decay"
    if not optim.warmup_steps:
        inert["optim.start_lr"] = "is where the lr warmup starts, and optim.warmup_steps 0 has none"
    return inert


def inert_keys(config: PretrainConfig | WorldModelConfig, *, encoder_given: bool = False) -> dict[str, str]:
    """{"section.key": why it has no effect} for the keys that would not act in a run of `config`
    (train-wm: given an encoder or not). The command that takes `config` refuses any of them set
    to a value other than its default (`refuse_inert_keys`)."""
    inert = _schedule_inert(config.optim)
    if isinstance(config, PretrainConfig):
        model = config.model
        inert["model.seed"] = (
            "seeds VJEPAModel's own mask sampler, which pretraining replaces by one seeded by run.seed"
        )
        if model.masks:
            for key in ("mask_ratio", "temporal_mask_ratio"):
                inert[f"model.{key}"] = "sets the default masks, which model.masks replaces"
        elif not model.temporal_mask_ratio:
            inert["model.mask_ratio"] = "sets the future mask, which model.temporal_mask_ratio 0 leaves out"
        if not model.sigreg:
            inert["model.sigreg_samples"] = "is what SIGReg takes as a sample; model.sigreg 0 turns it off"
        if model.target != "ema" and config.optim.ema is not None:
            inert["optim.ema"] = (
                f"is the EMA target's momentum, and model.target={model.target} has none (leave it out "
                "or set optim.ema=null)"
            )
        if config.data.fps is not None:
            inert["data.frame_step"] = "is replaced by data.fps (frames are sampled at that rate)"
        return inert
    mode = config.model.encoder_training
    inert["optim.ema"] = "is the momentum of pretraining's target encoder; train-wm has no EMA target"
    inert["optim.encoder_delay"] = "holds pretraining's context encoder still at the start; train-wm has none"
    inert["optim.predictor_lr_scale"] = "scales pretraining's predictor lr; train-wm has one lr for all"
    inert["run.fsdp"] = (
        "shards pretraining; train-wm runs DDP only (the predictor, even the released 300 M one, fits on "
        "a device, and the encoder is small or frozen)"
    )
    if mode == "frozen":
        inert |= {
            key: FROZEN_ONLY
            for key in (
                "loss.regularizer",
                "loss.regularizer_weight",
                "loss.inverse_dynamics",
                "loss.frame_decoding",
            )
        }
        inert["model.latent_dim"] = (
            "sizes the projector of trained encoders; a frozen one plans on its tokens"
        )
        inert["model.freeze_latents"] = FROZEN_ONLY
    elif config.model.freeze_latents:
        inert |= {
            key: "shapes the latents, which model.freeze_latents keeps fixed"
            for key in ("loss.regularizer", "loss.regularizer_weight")
        }
    if encoder_given:
        inert |= {f"encoder.{f.name}": INACTIVE_ENCODER for f in dataclasses.fields(EncoderPretraining)}
    elif mode == "joint":
        inert |= {f"encoder.{key}": JOINT_SKIPS for key in ("steps", "batch_size", "lr")}
        inert["encoder.num_frames"] = "is the clip length of V-JEPA pretraining, which joint training skips"
    if not config.loss.rollout:
        inert["loss.rollout_steps"] = "is the length of the rollout loss, which loss.rollout 0 turns off"
    if config.model.use_states is False:
        inert["loss.state_decoding"] = "weights the state head, which needs model.use_states"
    if not config.data.val_fraction:
        inert["data.eval_horizon"] = (
            "is the held-out evaluation's horizon; data.val_fraction 0 holds none out"
        )
    if config.distance.steps == 0:
        for f in dataclasses.fields(GoalDistanceConfig):
            if f.name != "steps":
                inert[f"distance.{f.name}"] = "trains the distance head, which distance.steps 0 leaves out"
    uncertainty = config.uncertainty
    if uncertainty.kind == "none":
        for key in ("dynamics", "representation", "free_nats"):
            inert[f"uncertainty.{key}"] = (
                "trains the stochastic latent, which uncertainty.kind none leaves out"
            )
    if uncertainty.kind == "none" and not uncertainty.ensemble:
        for f in dataclasses.fields(UncertaintyConfig)[2:]:  # all but kind and ensemble
            inert[f"uncertainty.{f.name}"] = (
                "fits the uncertainty heads; kind none and ensemble 0 ask for none"
            )
    elif not uncertainty.steps:
        for f in dataclasses.fields(UncertaintyConfig):
            if f.name != "steps":
                inert[f"uncertainty.{f.name}"] = (
                    "sets the uncertainty heads, which uncertainty.steps 0 leaves out"
                )
    return inert


def refuse_inert_keys(
    config: PretrainConfig | WorldModelConfig | TrainAgentConfig,
    inert: dict[str, str] | None = None,
    *,
    encoder_given: bool = False,
) -> None:
    """A one-line error for the first key of `inert` (default: `inert_keys`) whose value is not its
    default."""
    defaults = type(config)()
    inert = inert_keys(config, encoder_given=encoder_given) if inert is None else inert
    for key, reason in inert.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value != getattr(getattr(defaults, section), name):
            raise ValueError(f"{key} {reason}: drop it (its value {value!r} would be ignored)")


# ---------------------------------------------------------------------------- agent training


@dataclass
class AgentRun:
    seed: int = 0
    checkpoint_every: int = 100  # agent updates between checkpoints
    log_every: int = 10
    eval_episodes: int = 10  # closed-loop episodes against random actions at the end (0: none)


@dataclass
class OnlineConfig:
    """`train-agent --online`: collect with the current policy, retrain world model and agent, repeat."""

    iterations: int = 3
    episodes: int = 50  # collected per iteration with the policy's sampled actions
    world_model_steps: int = 250  # train-wm steps per iteration, continuing the world model's run
    agent_steps: int = 250  # agent updates per iteration, continuing the agent
    # continue a trained encoder's world model with its latents fixed (model.freeze_latents), so the
    # agent's inputs do not move under it; a frozen V-JEPA encoder's are fixed anyway
    freeze_latents: bool = False


@dataclass
class TrainAgentConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    run: AgentRun = field(default_factory=AgentRun)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def agent_inert_keys(*, online: bool, env_given: bool) -> dict[str, str]:
    """{"section.key": why it has no effect} for a train-agent run (`--online` or not, `--env` given or
    not); `train_agent` refuses any of them set away from its default (`refuse_inert_keys`)."""
    inert = {
        "agent.unimix": "mixes uniform choices into a discrete policy, and train-agent's actions are "
        "continuous (the environment's box)"
    }
    if not online:
        for option in dataclasses.fields(OnlineConfig):
            inert[f"online.{option.name}"] = "sets the online loop, which runs with --online only"
    if not env_given:
        inert["run.eval_episodes"] = "sets the evaluation in --env, and no --env was given"
    return inert
