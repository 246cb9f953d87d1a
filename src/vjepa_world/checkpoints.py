"""Checkpoints in three formats.

- Official V-JEPA 2 `.pt` files: a pickled dict with `encoder`, `predictor` and `target_encoder`
  state dicts (keys prefixed `module.backbone.`). They hold no config: the architecture is
  inferred from the weights (depth from the block count, widths from the shapes, the head count
  from the released widths).
- Hugging Face VJEPA2 directories: `config.json` + `model.safetensors` (or shards), keys under
  `encoder.` / `predictor.`, q/k/v as three Linears, mask tokens stacked.
- Directories we save: the Hugging Face layout (so `transformers.VJEPA2Model` loads them), with
  our exact configs in the `vjepa_world` entry of `config.json`.

Our modules use the official key names, so an official file only needs its prefixes stripped.
Pickles are only ever read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .config import (
    ACPredictorConfig,
    EncoderConfig,
    PredictorConfig,
    from_dict,
    preset_config,
    to_dict,
)
from .files import atomic_write, write_json

# Released widths -> head counts (the files do not say; ViT-g uses 22 heads, not the builder's 16).
RELEASED_ENCODER_HEADS = {1024: 16, 1280: 16, 1408: 22}
RELEASED_PREDICTOR_HEADS = {384: 12}
RELEASED_AC_PREDICTOR_HEADS = {1024: 16}
RELEASED_IMAGE_SIZE = 256  # the predictor's RoPE grid in the released files

StateDict = dict[str, Tensor]


# ---------------------------------------------------------------------------- reading files


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a `.pt`/`.pth` (weights only) or `.safetensors` file; bad files give one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as err:
            raise ValueError(f"cannot read {path}: truncated or not a safetensors file ({err})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0]
        raise ValueError(
            f"refusing to load {path}: it holds pickled objects other than tensors and plain containers "
            f"({reason}); load only checkpoints you trust, re-saved as weights"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        reason = str(err).strip().splitlines()[0]
        raise ValueError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt ({reason})"
        ) from None


def strip_prefixes(state: StateDict) -> StateDict:
    """Drop DDP/wrapper prefixes (`module.`, `backbone.`) and the unused leftover `pos_embed`."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^((module|backbone)\.)+", "", key)
        if key != "pos_embed":
            out[key] = value
    return out


def official_network(obj: Any, key: str, path: Path) -> StateDict:
    """One network's weights from an official checkpoint (or a bare state dict)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a dict of weights")
    if key in obj:
        obj = obj[key]
    elif not all(isinstance(v, Tensor) for v in obj.values()):
        networks = [k for k, v in obj.items() if isinstance(v, dict)]
        raise ValueError(f"{path} has no {key!r} entry: it holds {networks}; pass key= one of those")
    return strip_prefixes(obj)


# ---------------------------------------------------------------------------- Hugging Face layout

# (our prefix, Hugging Face prefix) per network; inside a block only attn.* is renamed.
HF_PREFIXES = {
    "encoder": [
        ("patch_embed.", "encoder.embeddings.patch_embeddings."),
        ("blocks.", "encoder.layer."),
        ("norm.", "encoder.layernorm."),
    ],
    "predictor": [
        ("predictor_embed.", "predictor.embeddings.predictor_embeddings."),
        ("predictor_blocks.", "predictor.layer."),
        ("predictor_norm.", "predictor.layernorm."),
        ("predictor_proj.", "predictor.proj."),
    ],
}
HF_MASK_TOKENS = "predictor.embeddings.mask_tokens"
AC_PREFIX = "ac_predictor."
QKV = ("query", "key", "value")


def _swap_prefix(key: str, pairs: list[tuple[str, str]]) -> str | None:
    for old, new in pairs:
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def to_hf(state: StateDict, role: str) -> StateDict:
    """Our (official) key names -> Hugging Face VJEPA2Model's, splitting the fused qkv."""
    if role == "ac_predictor":
        return {AC_PREFIX + k: v for k, v in state.items()}
    out: StateDict = {}
    masks = sorted((k for k in state if k.startswith("mask_tokens.")), key=lambda k: int(k.split(".")[1]))
    if masks:
        out[HF_MASK_TOKENS] = torch.stack([state[k] for k in masks])  # (n, 1, 1, d)
    for key, value in state.items():
        if key in masks:
            continue
        key = _swap_prefix(key, HF_PREFIXES[role]) or key
        key = key.replace(".attn.proj.", ".attention.proj.")
        if ".attn.qkv." in key:
            for name, part in zip(QKV, value.chunk(3), strict=True):
                out[key.replace(".attn.qkv.", f".attention.{name}.")] = part
        else:
            out[key] = value
    return out


def from_hf(state: StateDict, role: str) -> StateDict:
    """Hugging Face VJEPA2 keys of one network -> ours, fusing q/k/v; other networks' keys dropped.
    The action-conditioned predictor (no Hugging Face counterpart) is stored under `ac_predictor.`."""
    if role == "ac_predictor":
        return {k.removeprefix(AC_PREFIX): v for k, v in state.items() if k.startswith(AC_PREFIX)}
    state = {re.sub(r"^vjepa2\.", "", k): v for k, v in state.items()}  # VJEPA2ForVideoClassification
    back = [(new, old) for old, new in HF_PREFIXES[role]]
    out: StateDict = {}
    if role == "predictor" and HF_MASK_TOKENS in state:
        for i, token in enumerate(state[HF_MASK_TOKENS]):
            out[f"mask_tokens.{i}"] = token
    for key, value in state.items():
        ours = _swap_prefix(key, back)
        if ours is None or ".attention.key." in ours or ".attention.value." in ours:
            continue
        if ".attention.query." in ours:
            parts = [state[key.replace(".attention.query.", f".attention.{name}.")] for name in QKV]
            out[ours.replace(".attention.query.", ".attn.qkv.")] = torch.cat(parts)
        else:
            out[ours.replace(".attention.proj.", ".attn.proj.")] = value
    return out


def hf_config(
    encoder: EncoderConfig | None,
    predictor: PredictorConfig | None,
    ac_predictor: ACPredictorConfig | None = None,
) -> dict[str, Any]:
    """A VJEPA2Config dict for the networks given, plus our exact configs under `vjepa_world`."""
    ours = {
        "vjepa_world": {
            name: to_dict(cfg)
            for name, cfg in (("encoder", encoder), ("predictor", predictor), ("ac_predictor", ac_predictor))
            if cfg is not None
        }
    }
    grid = encoder or predictor
    if grid is None:
        if ac_predictor is None:
            raise ValueError("nothing to save: pass an encoder, a predictor or both")
        return {"architectures": ["ActionConditionedPredictor"]} | ours
    predictor_defaults = PredictorConfig(encoder_dim=encoder.dim if encoder else 1024)
    pred = predictor or predictor_defaults
    return {
        "architectures": ["VJEPA2Model"],
        "model_type": "vjepa2",
        "patch_size": grid.patch_size,
        "crop_size": grid.image_size,
        "frames_per_clip": grid.num_frames,
        "tubelet_size": grid.tubelet_size,
        "in_chans": 3,
        "hidden_size": encoder.dim if encoder else pred.encoder_dim,
        "num_attention_heads": encoder.num_heads if encoder else 1,
        "num_hidden_layers": encoder.depth if encoder else 0,
        "mlp_ratio": encoder.mlp_ratio if encoder else 4.0,
        "layer_norm_eps": grid.norm_eps,
        "qkv_bias": grid.qkv_bias,
        "hidden_act": "gelu",
        "pred_hidden_size": pred.dim,
        "pred_num_attention_heads": pred.num_heads,
        "pred_num_hidden_layers": pred.depth,
        "pred_num_mask_tokens": pred.num_mask_tokens,
        "pred_mlp_ratio": pred.mlp_ratio,
    } | ours


def config_from_hf(config: dict[str, Any], role: str) -> dict[str, Any]:
    """Our config fields for one network from a VJEPA2 `config.json` (ours: exact, stored)."""
    ours = config.get("vjepa_world", {})
    if role in ours:
        return ours[role]
    if ours or role == "ac_predictor":  # a directory of ours that holds only other networks
        held = ", ".join(ours) or "VJEPA2Model networks"
        raise ValueError(f"this directory holds no {role} (it was saved with only the {held})")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported hidden_act {config['hidden_act']!r}: V-JEPA 2 uses exact GELU")
    grid = {
        "patch_size": config.get("patch_size", 16),
        "tubelet_size": config.get("tubelet_size", 2),
        "image_size": config.get("crop_size", 256),
        "num_frames": config.get("frames_per_clip", 64),
        "qkv_bias": config.get("qkv_bias", True),
        "norm_eps": config.get("layer_norm_eps", 1e-6),
    }
    if role == "encoder":
        return grid | {
            "dim": config.get("hidden_size", 1024),
            "depth": config.get("num_hidden_layers", 24),
            "num_heads": config.get("num_attention_heads", 16),
            "mlp_ratio": config.get("mlp_ratio", 4.0),
        }
    return grid | {
        "encoder_dim": config.get("hidden_size", 1024),
        "dim": config.get("pred_hidden_size", 384),
        "depth": config.get("pred_num_hidden_layers", 12),
        "num_heads": config.get("pred_num_attention_heads", 12),
        "mlp_ratio": config.get("pred_mlp_ratio", 4.0),
        "num_mask_tokens": config.get("pred_num_mask_tokens", 10),
    }


def read_hf_directory(directory: Path) -> tuple[dict[str, Any], StateDict]:
    """`config.json` and all weights of a Hugging Face style directory (single file or shards)."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{directory} has no config.json: not a Hugging Face or vjepa_world model directory"
        )
    config = json.loads(config_path.read_text())
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        shards = ["model.safetensors"]
    state: StateDict = {}
    for shard in shards:
        state.update(read_checkpoint_file(directory / shard))
    return config, state


# ---------------------------------------------------------------------------- inferring configs


def _count_blocks(state: StateDict, prefix: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def _heads(width: int, table: dict[int, int], what: str) -> int:
    if width not in table:
        raise ValueError(
            f"cannot infer the head count of a {width}-wide {what} (released widths: "
            f"{', '.join(map(str, table))}): pass num_heads=... or preset=..."
        )
    return table[width]


def _require(state: StateDict, key: str, what: str, source: Path) -> Tensor:
    if key not in state:
        sample = ", ".join(list(state)[:4])
        raise ValueError(f"{source} holds no {what} weights ({key} missing; keys start: {sample})")
    return state[key]


def infer_encoder_config(state: StateDict, source: Path, **overrides: Any) -> dict[str, Any]:
    """Encoder config fields from an official state dict; `overrides` win over what is inferred."""
    weight = _require(state, "patch_embed.proj.weight", "encoder", source)  # (D, 3, tubelet, p, p)
    dim = weight.shape[0]
    hidden = _require(state, "blocks.0.mlp.fc1.weight", "encoder block", source).shape[0]
    fields = {
        "dim": dim,
        "depth": _count_blocks(state, "blocks"),
        "mlp_ratio": hidden / dim,
        "patch_size": weight.shape[-1],
        "tubelet_size": weight.shape[2],
        "image_size": RELEASED_IMAGE_SIZE,
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
    }
    if "num_heads" not in overrides:
        fields["num_heads"] = _heads(dim, RELEASED_ENCODER_HEADS, "encoder")
    return fields | overrides


def infer_predictor_config(state: StateDict, source: Path, **overrides: Any) -> dict[str, Any]:
    """Predictor config fields from an official state dict; `overrides` win over what is inferred."""
    embed = _require(state, "predictor_embed.weight", "predictor", source)  # (d, D)
    dim, encoder_dim = embed.shape
    hidden = _require(state, "predictor_blocks.0.mlp.fc1.weight", "predictor block", source).shape[0]
    fields = {
        "encoder_dim": encoder_dim,
        "dim": dim,
        "depth": _count_blocks(state, "predictor_blocks"),
        "mlp_ratio": hidden / dim,
        "num_mask_tokens": sum(k.startswith("mask_tokens.") for k in state),
        "image_size": RELEASED_IMAGE_SIZE,
        "qkv_bias": "predictor_blocks.0.attn.qkv.bias" in state,
    }
    if "num_heads" not in overrides:
        fields["num_heads"] = _heads(dim, RELEASED_PREDICTOR_HEADS, "predictor")
    return fields | overrides


def infer_ac_predictor_config(state: StateDict, source: Path, **overrides: Any) -> dict[str, Any]:
    """Action-conditioned predictor config fields from an official AC state dict (no config in
    the file): widths from the embeddings, condition sizes from their encoders."""
    embed = _require(state, "predictor_embed.weight", "predictor", source)  # (d, D)
    dim, encoder_dim = embed.shape
    hidden = _require(state, "predictor_blocks.0.mlp.fc1.weight", "predictor block", source).shape[0]
    action = _require(state, "action_encoder.weight", "action-conditioned predictor", source)
    fields = {
        "encoder_dim": encoder_dim,
        "dim": dim,
        "depth": _count_blocks(state, "predictor_blocks"),
        "mlp_ratio": hidden / dim,
        "action_dim": action.shape[1],
        "state_dim": state["state_encoder.weight"].shape[1] if "state_encoder.weight" in state else 0,
        "extrinsics_dim": (
            state["extrinsics_encoder.weight"].shape[1] if "extrinsics_encoder.weight" in state else 0
        ),
        "qkv_bias": "predictor_blocks.0.attn.qkv.bias" in state,
    }
    if "num_heads" not in overrides:
        fields["num_heads"] = _heads(dim, RELEASED_AC_PREDICTOR_HEADS, "action-conditioned predictor")
    return fields | overrides


# ---------------------------------------------------------------------------- loading and saving

# role -> (config class, config inference for official files, default network key in them)
ROLES = {
    "encoder": (EncoderConfig, infer_encoder_config, "target_encoder"),
    "predictor": (PredictorConfig, infer_predictor_config, "predictor"),
    "ac_predictor": (ACPredictorConfig, infer_ac_predictor_config, "predictor"),
}


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state(model: nn.Module, state: StateDict, source: Any) -> None:
    """Strict load whose error names every missing, unexpected and wrong-shaped key (one line)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)} expected"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{label}: {_listing(keys)}"
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong),
        )
        if keys
    ]
    if problems:
        raise ValueError(
            f"checkpoint {source} does not match the {type(model).__name__} config ({'; '.join(problems)}); "
            "pass preset= or config keywords that match the file"
        )
    model.load_state_dict(state)


def load_pretrained(
    cls: type[nn.Module],
    source: str | os.PathLike,
    *,
    preset: str | None = None,
    key: str | None = None,
    **overrides,
) -> nn.Module:
    """Build `cls` (VideoEncoder, MaskedPredictor or ActionConditionedPredictor) and load weights
    from `source`. A directory's stored config is kept: a preset or keyword may only fill in what
    it does not say, and one that contradicts it is an error. An official file has no config: then
    keywords > preset > what its weights imply."""
    role = cls.checkpoint_role
    config_cls, infer, default_key = ROLES[role]
    path = Path(source)
    if path.is_dir():
        config, raw = read_hf_directory(path)
        state = from_hf(raw, role)
        stored = config_from_hf(config, role)
        requested = dict(overrides)
        if preset:  # None in a preset means "not set" (out_layers, mask_types)
            named = to_dict(preset_config(preset, role)).items()
            requested = {k: v for k, v in named if v is not None} | requested
        given = " and ".join([f"preset {preset!r}"] * bool(preset) + ["keywords"] * bool(overrides))
        _refuse_contradictions(stored, requested, path, given)
        model = cls(from_dict(config_cls, requested | stored))
    elif path.is_file():
        state = official_network(read_checkpoint_file(path), key or default_key, path)
        config = (
            preset_config(preset, role) if preset else from_dict(config_cls, infer(state, path, **overrides))
        )
        model = cls(config, **overrides)
    else:
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (expected a .pt file or a model directory)"
        )
    load_state(model, state, path)
    return model


def _refuse_contradictions(stored: dict, requested: dict, path: Path, given: str) -> None:
    """A one-line error naming every requested field whose value differs from the stored config's."""
    differ = [
        f"{k} {v!r} (stored: {stored[k]!r})" for k, v in requested.items() if k in stored and v != stored[k]
    ]
    if differ:
        raise ValueError(
            f"the config stored in {path / 'config.json'} differs from {given}: {', '.join(differ)}; "
            "drop them (the directory's config is used)"
        )


def save_pretrained(
    directory: str | os.PathLike,
    encoder: nn.Module | None = None,
    predictor: nn.Module | None = None,
    ac_predictor: nn.Module | None = None,
) -> Path:
    """Write `config.json` + `model.safetensors` in the Hugging Face VJEPA2 layout, atomically
    (the action-conditioned predictor, which that layout lacks, under `ac_predictor.`), and return
    the directory."""
    directory = Path(directory)
    networks = {"encoder": encoder, "predictor": predictor, "ac_predictor": ac_predictor}
    tensors: StateDict = {}
    for role, model in networks.items():
        if model is not None:
            tensors |= to_hf(model.state_dict(), role)
    config = hf_config(*(m.config if m is not None else None for m in networks.values()))
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), {"format": "pt"}))
    write_json(directory / "config.json", config)
    return directory


def encoder_fingerprint(encoder: nn.Module, projector: nn.Module | None = None) -> str:
    """A hash of an encoder's (and projector's) config and every byte of its weights: the key of
    every feature cache, so features of another encoder, or of the same one after training, are
    never reused."""
    modules = [encoder] if projector is None else [encoder, projector]
    digest = hashlib.sha1(json.dumps(dataclasses.asdict(encoder.config), sort_keys=True).encode())
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return f"{type(encoder).__name__}-{digest.hexdigest()[:16]}"
