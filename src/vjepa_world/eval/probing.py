"""Training probes on a frozen encoder: cached features, many heads in one pass, top-1/top-5.

With the backbone frozen and no augmentation, each clip's tokens never change, so they are
computed once and cached on disk (keyed by the encoder and the settings); every epoch of every
head then reads the cache. Several learning rates x weight decays are trained side by side on
the same batches (upstream trains 20 heads at once) and the best head is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoints import encoder_fingerprint
from ..data.datasets import EpochSampler, VideoDataset, collate_clips
from ..files import atomic_torch_save, atomic_write, write_json
from ..nn import VideoEncoder
from ..viz import plot_confusion_matrix
from .probes import AttentiveProbe, LinearProbe, ProbeConfig, knn_scores, topk_accuracy

log = logging.getLogger(__name__)


@dataclass
class FeatureSettings:
    """How clips are cut and encoded; part of the cache key."""

    frames: int = 16
    frame_step: int = 4
    size: int | None = None  # default: the encoder's image size
    clips: int = 1  # clips per video, evenly spaced; their predictions are averaged per video
    views: int = 1  # spatial crops per clip (3: upstream's multi-view evaluation), averaged too
    layers: list[int] = field(default_factory=list)  # several blocks' tokens, concatenated; [] = last


@dataclass
class Features:
    tokens: Tensor  # (clips, N, D)
    labels: Tensor  # (clips,)
    videos: Tensor  # (clips,) which video each clip belongs to


@torch.inference_mode()
def encode_csv(
    encoder: VideoEncoder,
    source,
    settings: FeatureSettings,
    *,
    cache_dir: Path | None = None,
    batch_size: int = 8,
    workers: int = 2,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Features:
    """Tokens of every clip of a `path,label` CSV (or folder), from the disk cache when present."""
    size = settings.size or encoder.config.image_size
    key = hashlib.sha256(
        json.dumps([encoder_fingerprint(encoder), str(source), asdict(settings), size, str(dtype)]).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"{Path(str(source)).stem}-{key}.safetensors" if cache_dir else None
    if cached is not None and cached.exists():
        return Features(**load_file(cached))
    dataset = VideoDataset(
        source,
        num_frames=settings.frames,
        frame_step=settings.frame_step,
        clips_per_video=settings.clips,
        views=settings.views,
        image_size=size,
        train=False,
    )
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_clips)
    encoder = encoder.to(device=device, dtype=dtype).eval()
    tokens, labels, videos = [], [], []
    for batch in tqdm(loader, desc=f"encode {Path(str(source)).name}", unit="batch", disable=not progress):
        video = batch["video"].to(device=device, dtype=dtype)
        out = (
            torch.cat(encoder(video, out_layers=settings.layers), dim=1)
            if settings.layers
            else encoder(video)
        )
        tokens.append(out.float().cpu())
        labels.append(batch["label"])
        videos.append(batch["index"] // (settings.clips * settings.views))
    features = Features(torch.cat(tokens), torch.cat(labels), torch.cat(videos))
    if (features.labels < 0).any():
        raise ValueError(f"{source} has clips without a label: probing needs a `path,label` CSV")
    if cached is not None:
        atomic_write(cached, lambda tmp: save_file(asdict(features), str(tmp)))
    return features


class CachedTrainSet:
    """Training batches from cached features, reshuffled each epoch (seeded)."""

    def __init__(self, features: Features, batch_size: int, seed: int = 0):
        self.features, self.batch_size, self.seed = features, batch_size, seed
        self.size, self.dim = len(features.tokens), features.tokens.shape[-1]
        self.num_classes = int(features.labels.max()) + 1

    def batches(self, epoch: int):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        for index in order.split(self.batch_size):
            yield self.features.tokens[index], self.features.labels[index]


class AugmentedTrainSet:
    """Training batches encoded afresh every epoch from randomly cropped and flipped clips
    (`VideoDataset` in train mode): what probing with augmentation needs, since the features then
    change from epoch to epoch and cannot be cached."""

    def __init__(
        self,
        encoder: VideoEncoder,
        source,
        settings: FeatureSettings,
        batch_size: int,
        seed: int = 0,
        workers: int = 2,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        size = settings.size or encoder.config.image_size
        self.dataset = VideoDataset(
            source,
            num_frames=settings.frames,
            frame_step=settings.frame_step,
            image_size=size,
            train=True,
            seed=seed,
        )
        self.encoder = encoder.to(device=device, dtype=dtype).eval()
        self.settings, self.batch_size, self.workers, self.device, self.dtype = (
            settings,
            batch_size,
            workers,
            device,
            dtype,
        )
        self.size, self.dim = len(self.dataset), encoder.config.dim
        self.num_classes = max(self.dataset.labels) + 1
        if min(self.dataset.labels) < 0:
            raise ValueError(f"{source} has videos without a label: probing needs a `path,label` CSV")

    def batches(self, epoch: int):
        keys = EpochSampler(self.size, seed=0).epoch_keys(epoch).tolist()  # new crops each epoch
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=keys,
            num_workers=self.workers,
            collate_fn=collate_clips,
        )
        for batch in loader:
            with torch.inference_mode():
                video = batch["video"].to(device=self.device, dtype=self.dtype)
                layers = self.settings.layers
                tokens = (
                    torch.cat(self.encoder(video, out_layers=layers), dim=1)
                    if layers
                    else self.encoder(video)
                )
            yield tokens.float().cpu().clone(), batch["label"]


def per_video(scores: Tensor, features: Features) -> tuple[Tensor, Tensor]:
    """Average clip scores (probabilities) per video -> (video scores, video labels)."""
    videos, inverse = torch.unique(features.videos, return_inverse=True)
    summed = torch.zeros(len(videos), scores.shape[1]).index_add_(0, inverse, scores)
    counts = torch.zeros(len(videos)).index_add_(0, inverse, torch.ones(len(inverse)))
    labels = torch.zeros(len(videos), dtype=torch.long).index_copy_(0, inverse, features.labels)
    return summed / counts[:, None], labels


@torch.no_grad()
def predict_videos(probe: nn.Module, features: Features, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Class probabilities per video (clips' softmaxes averaged) and the videos' labels."""
    probe.eval()
    probs = torch.cat([probe(chunk).softmax(-1) for chunk in features.tokens.split(batch_size)])
    return per_video(probs, features)


def evaluate(probe: nn.Module, features: Features) -> dict[str, float]:
    scores, labels = predict_videos(probe, features)
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, 5)}


def make_probe(kind: str, dim: int, num_classes: int, num_heads: int, **options) -> nn.Module:
    """`options`: the attentive probe's grid, positions and regions (see `ProbeConfig`)."""
    if kind == "attentive":
        return AttentiveProbe(ProbeConfig(dim=dim, num_classes=num_classes, num_heads=num_heads, **options))
    if kind == "linear":
        return LinearProbe(dim, num_classes)
    raise ValueError(f"unknown probe {kind!r}: attentive, linear or knn")


def warmup_cosine(lr: float, step: int, steps: int, warmup: int) -> float:
    """Linear warmup then cosine decay, the released probes' schedule."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(steps - warmup, 1)))


def train_heads(
    train: Features | CachedTrainSet | AugmentedTrainSet,
    val: Features,
    *,
    kind: str = "attentive",
    lrs: tuple[float, ...] = (1e-3, 3e-4),
    weight_decays: tuple[float, ...] = (0.01, 0.1),
    epochs: int = 20,
    batch_size: int = 16,
    num_heads: int = 16,
    seed: int = 0,
    progress: bool = True,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
    probe_options: dict | None = None,
    precision: str = "float32",
) -> tuple[nn.Module, dict]:
    """Train one probe per (lr, weight decay) on the same batches; return the best head (by final
    validation top-1) and a summary with every head's per-epoch top-1/top-5. `train` is cached
    features (shuffled each epoch) or a set that yields batches, e.g. `AugmentedTrainSet`.
    `probe_options`: grid, positions, regions of the attentive probe; `precision` "bfloat16" trains
    under bf16 autocast (fast where the CPU or GPU has bf16 matrix units)."""
    if kind == "knn":
        if not isinstance(train, Features):
            raise ValueError("kNN needs cached features: it has no training epochs to augment")
        num_classes = int(max(train.labels.max(), val.labels.max())) + 1
        scores = knn_scores(train.tokens.mean(1), train.labels, val.tokens.mean(1), num_classes)
        video_scores, labels = per_video(scores / scores.sum(1, keepdim=True), val)
        result = {
            "top1": topk_accuracy(video_scores, labels, 1),
            "top5": topk_accuracy(video_scores, labels, 5),
        }
        return None, {"probe": "knn", "best": result, "heads": []}
    if isinstance(train, Features):
        train = CachedTrainSet(train, batch_size, seed)
    num_classes, dim = max(train.num_classes, int(val.labels.max()) + 1), train.dim
    torch.manual_seed(seed)
    grid = list(itertools.product(lrs, weight_decays))
    heads = [make_probe(kind, dim, num_classes, num_heads, **(probe_options or {})) for _ in grid]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")  # on CPU tokens
    optimizers = [
        torch.optim.AdamW(h.parameters(), lr=lr, weight_decay=wd)
        for h, (lr, wd) in zip(heads, grid, strict=True)
    ]
    steps_per_epoch = -(-train.size // batch_size)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch
    history = [{"lr": lr, "weight_decay": wd, "epochs": []} for lr, wd in grid]
    bar = tqdm(total=epochs, desc=f"probe ({len(heads)} heads)", unit="epoch", disable=not progress)
    step = 0
    for epoch in range(epochs):
        for head in heads:
            head.train()
        for tokens, labels in train.batches(epoch):
            for head, optimizer, (lr, _) in zip(heads, optimizers, grid, strict=True):
                for group in optimizer.param_groups:
                    group["lr"] = warmup_cosine(lr, step, total, warmup)
                with autocast:
                    loss = F.cross_entropy(head(tokens).float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            step += 1
        for record, head in zip(history, heads, strict=True):
            record["epochs"].append(evaluate(head, val))
        best = max(r["epochs"][-1]["top1"] for r in history)
        bar.set_postfix(best_top1=f"{best:.3f}")
        bar.update()
        if on_epoch:
            on_epoch(epoch, history)
    bar.close()
    index = max(range(len(heads)), key=lambda i: history[i]["epochs"][-1]["top1"])
    summary = {
        "probe": kind,
        "best": {**history[index]["epochs"][-1], **{k: history[index][k] for k in ("lr", "weight_decay")}},
        "heads": history,
    }
    return heads[index], summary


def run_probe(
    encoder: VideoEncoder,
    train,
    val,
    out: str | Path,
    *,
    features: FeatureSettings | None = None,
    kind: str = "attentive",
    lrs: tuple[float, ...] = (1e-3, 3e-4),
    weight_decays: tuple[float, ...] = (0.01, 0.1),
    epochs: int = 20,
    batch_size: int = 16,
    num_heads: int = 16,
    augment: bool = False,
    cache: bool = True,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    positions: bool = False,
    pool_regions: int | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> dict:
    """`vjepa-world probe`: encode the `path,label` CSVs (or folders) `train` and `val` with the frozen
    encoder (cached in `out/cache` unless `cache` is off; `augment` re-encodes random crops of the
    training clips every epoch instead), train a probe per lr x weight decay (`train_heads`), and
    write into `out`: `probe.pt` (the best head, released probe layout), `confusion_matrix.png` and
    `summary.json`. Returns the summary. `positions` and `pool_regions` are the attentive probe's
    options (see `ProbeConfig`); `dtype` bfloat16 also trains the heads under bf16 autocast."""
    if kind != "attentive" and (positions or pool_regions):
        raise ValueError(f"--positions and --pool-regions set the attentive probe, not {kind}: drop them")
    features = features or FeatureSettings()
    out = Path(out)
    encode = dict(
        cache_dir=out / "cache" if cache else None, batch_size=batch_size, device=device, dtype=dtype
    )
    val_features = encode_csv(encoder, val, features, progress=progress, **encode)
    if augment:  # features change every epoch: encode each batch afresh, no cache
        single_view = dataclasses.replace(features, views=1)
        train_set = AugmentedTrainSet(encoder, train, single_view, batch_size, device=device, dtype=dtype)
    else:
        train_set = encode_csv(
            encoder, train, dataclasses.replace(features, views=1), progress=progress, **encode
        )
    c = encoder.config
    size = features.size or c.image_size
    grid = (features.frames // c.tubelet_size, size // c.patch_size, size // c.patch_size)
    options = {"grid": grid, "positions": positions, "regions": pool_regions}
    probe, summary = train_heads(
        train_set,
        val_features,
        kind=kind,
        lrs=tuple(lrs),
        weight_decays=tuple(weight_decays),
        epochs=epochs,
        batch_size=batch_size,
        num_heads=num_heads,
        progress=progress,
        on_epoch=on_epoch,
        probe_options=options if kind == "attentive" else None,
        precision="bfloat16" if dtype == torch.bfloat16 else "float32",
    )
    summary["settings"] = {
        "train": str(train),
        "val": str(val),
        **asdict(features),
        "probe": kind,
        "lr": list(lrs),
        "wd": list(weight_decays),
        "epochs": epochs,
        "batch_size": batch_size,
        "heads": num_heads,
        "positions": positions,
        "pool_regions": pool_regions,
        "augment": augment,
        "cache": cache,
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
    }
    if probe is not None:  # the released probe layout: AttentiveProbe.from_released reads it back
        recorded = probe.config.options() if kind == "attentive" else {"num_heads": num_heads}
        atomic_torch_save({"classifiers": [probe.state_dict()], **recorded}, out / "probe.pt")
        scores, labels = predict_videos(probe, val_features)
        classes = [str(c) for c in range(scores.shape[1])]
        plot_confusion_matrix(labels, scores.argmax(1), classes, out / "confusion_matrix.png")
    write_json(out / "summary.json", summary)
    return summary
