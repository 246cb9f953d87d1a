"""One grammar for the command line: the README's table of concepts and flags is what every
command's --help says, each flag means one thing, and the old spellings still work with a message."""

import re
import warnings
from pathlib import Path

import pytest

from vjepa_world import VideoEncoder
from vjepa_world.cli import build_parser, main, planner_overrides
from vjepa_world.config import Deprecated, get_preset
from vjepa_world.nn import load_encoder

README = Path(__file__).resolve().parents[1] / "README.md"


def commands() -> dict[str, str]:
    """{command: its --help text}."""
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return {name: sub.format_help() for name, sub in subparsers.choices.items()}


def help_flags(text: str) -> set[str]:
    """The long options a --help lists (not --help itself)."""
    options = text[text.index("options:") :]
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z-]*)", options, flags=re.M)) - {"--help"}


def table() -> list[tuple[str, dict[str, set[str]]]]:
    """The README's concept table: [(concept, {command: its flags of that concept})]; a row's
    `;`-separated flag groups go to its `;`-separated command groups, in order."""
    text = README.read_text()
    start = text.index("| concept | flags | commands |")
    rows = []
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        concept, flags, names = (cell.strip() for cell in line.strip("|").split("|"))
        flag_groups = [set(re.findall(r"`(--[a-z][a-z-]*)", group)) for group in flags.split(";")]
        name_groups = [[n.strip() for n in group.split(",")] for group in names.split(";")]
        assert len(flag_groups) == len(name_groups), f"row {concept!r}: flag and command groups differ"
        by_command: dict[str, set[str]] = {}
        for group, names in zip(flag_groups, name_groups, strict=True):
            for name in commands() if names == ["all"] else names:
                by_command.setdefault(name, set()).update(group)
        rows.append((concept, by_command))
    return rows


def test_the_readme_table_is_every_commands_help():
    helps = commands()
    rows = table()
    assert len(rows) >= 15
    for name, text in helps.items():
        documented = set().union(*(row.get(name, set()) for _, row in rows))
        assert help_flags(text) == documented, f"{name}: --help and the README table differ"
    assert {name for _, row in rows for name in row} == set(helps)


def test_one_spelling_per_concept():
    """A flag belongs to one concept (one table row), and a concept spelled by one flag or group."""
    owner: dict[str, str] = {}
    for concept, row in table():
        for flag in set().union(*row.values()):
            assert flag not in owner, f"{flag} spells both {owner.get(flag)!r} and {concept!r}"
            owner[flag] = concept
    assert "--size" not in owner  # two meanings once: --crop-size and --frame-size now


def parse(argv: list[str]):
    """Parse argv, returning (namespace, the deprecation messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Deprecated)
        args = build_parser().parse_args(argv)
    return args, [str(w.message) for w in caught if issubclass(w.category, Deprecated)]


@pytest.mark.parametrize(
    "argv, attribute, value, message",
    [
        (["extract", "--encoder", "e", "--out", "o", "--size", "32", "v.mp4"], "crop_size", 32, "--size"),
        (["collect", "--out", "o", "--size", "32"], "frame_size", 32, "use --frame-size"),
        (["plan", "--world-model", "w", "--out", "o", "--size", "48"], "frame_size", 48, "use --frame-size"),
        (
            ["make-dataset", "--out", "o", "--train", "4", "--val", "2"],
            "train_videos",
            4,
            "use --train-videos",
        ),
        (
            ["plan", "--world-model", "w", "--out", "o", "--preset", "fast"],
            "planner",
            "fast",
            "use --planner",
        ),
        (["demo", "--preset", "lewm"], "planner", "lewm", "use --planner"),
    ],
)
def test_old_flags_still_parse_with_a_deprecation(argv, attribute, value, message):
    args, messages = parse(argv)
    assert getattr(args, attribute) == value
    assert messages and message in messages[0]


def test_the_new_flags_parse_without_a_message():
    args, messages = parse(
        ["extract", "--encoder", "e", "--out", "o", "--crop-size", "32", "--data", "a", "b"]
    )
    assert (args.crop_size, args.data, messages) == (32, ["a", "b"], [])


def test_set_is_section_dot_key_everywhere_and_the_old_flat_plan_form_still_works():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Deprecated)
        assert planner_overrides(["planner.samples=20", "planner.method=mppi"]) == (
            {"samples": 20, "method": "mppi"},
            [],
        )
        assert not caught
        assert planner_overrides(["samples=20"]) == ({"samples": 20}, [])
    assert "write --set planner.samples=20" in str(caught[0].message)
    sections = ("optim", "planner")
    assert planner_overrides(["optim.steps=3", "planner.horizon=2"], sections) == (
        {"horizon": 2},
        ["optim.steps=3"],
    )
    with pytest.raises(ValueError, match=r"section\.key=value with a section in"):
        planner_overrides(["optim.steps=3"])  # plan has no training sections


def test_plan_and_demo_refuse_bad_planner_settings_before_any_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--set", "planner.sampels=3"]) == 2
    assert "unknown PlannerConfig keys ['sampels']" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--set", "planner.temperature=0.1"]) == 2
    assert "planner.temperature is MPPI's" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--set", "optim.ema=[0.9, 0.9]"]) == 2
    assert "optim.ema is the momentum of pretraining's target encoder" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    argv = ["plan", "--world-model", str(tmp_path / "none"), "--out", str(tmp_path / "p")]
    assert main([*argv, "--planner", "lewm", "--set", "planner.elites=400"]) == 2
    assert "CEM needs 1 <= elites <= samples" in capsys.readouterr().err


def test_an_encoder_path_that_does_not_exist_is_an_error_and_random_weights_are_explicit(tmp_path, capsys):
    argv = ["extract", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--encoder"]
    assert main([*argv, str(tmp_path / "runs" / "vit_tiny")]) == 2
    error = capsys.readouterr().err
    assert "encoder checkpoint" in error and "does not exist" in error and "random:<preset>" in error
    assert main([*argv, "vit_tny"]) == 2  # a typo of a preset name: not random weights
    assert "random:<preset>" in capsys.readouterr().err
    encoder = load_encoder("random:vit_micro")
    assert isinstance(encoder, VideoEncoder) and encoder.config == get_preset("vit_micro").encoder
    with pytest.raises(ValueError, match="preset= and key= apply to checkpoints only"):
        load_encoder("random:vit_micro", preset="vit_tiny")
    with pytest.warns(Deprecated, match="write random:vit_micro"):
        assert load_encoder("vit_micro").config == encoder.config  # today's spelling, one more release
    with pytest.raises(ValueError, match="unknown preset 'vit_mikro'"):
        load_encoder("random:vit_mikro")


def test_the_command_line_prints_deprecations_as_one_line(tmp_path, capsys):
    argv = [
        "make-dataset",
        "--out",
        str(tmp_path),
        "--train",
        "2",
        "--val",
        "1",
        "--frames",
        "8",
        "--size",
        "32",
    ]
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert lines == [
        "vjepa-world: deprecated: --train is deprecated: use --train-videos",
        "vjepa-world: deprecated: --val is deprecated: use --val-videos",
        "vjepa-world: deprecated: --size is deprecated: use --frame-size",
    ]


def test_collect_offers_the_policies_of_the_library_and_its_defaults():
    """The CLI spells the policy list and the episode count out (importing the environments would
    slow every command)."""
    from vjepa_world.envs import DEFAULT_EPISODES, DEFAULT_POLICY, POLICIES

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    arguments = {a.dest: a for a in subparsers.choices["collect"]._actions}
    policy, episodes = arguments["policy"], arguments["episodes"]
    assert tuple(policy.choices) == POLICIES and policy.default == DEFAULT_POLICY == "mixed"
    assert episodes.default == DEFAULT_EPISODES == 1600
