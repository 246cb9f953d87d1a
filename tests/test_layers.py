"""Imports follow the data flow of DESIGN.md: data -> nn -> models -> planning -> train/eval -> cli.

Every import of a package module, at the top of a file or inside a function, is read from the
source. A module may import its own group and the groups of lower layers; groups on one layer
(train and eval) do not import each other; and no chain of imports leads back to where it started.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vjepa_world"

# (layer, group, the modules and packages in it), lowest layer first
LAYERS = [
    (0, "foundation", ["config", "files", "masks"]),  # configs and presets, file writing, mask samplers
    (1, "data", ["data"]),
    (1, "checkpoints", ["checkpoints"]),  # file formats: below nn, whose from_pretrained uses them
    (2, "nn", ["nn"]),
    (2, "envs", ["envs"]),
    (2, "viz", ["viz"]),
    (3, "models", ["jepa", "world_model", "horizon_errors"]),
    (
        4,
        "planning",
        ["planning", "agent", "actor_critic", "agent_pixels", "policy_export", "planner_teacher"],
    ),
    (5, "train", ["train"]),
    (5, "eval", ["eval"]),
    (6, "demo", ["demo"]),
    (6, "seed", ["seed"]),  # the design document's seed API: models with their training attached
    (7, "cli", ["cli"]),
    (8, "package", ["__init__"]),  # the public names
]
GROUPS = {member: (layer, group) for layer, group, members in LAYERS for member in members}


def module_name(path: Path) -> str:
    """src/vjepa_world/train/pretrain.py -> "train.pretrain"; a package's __init__ -> the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def group_of(module: str) -> tuple[int, str]:
    head = module.split(".")[0]
    if head not in GROUPS:
        pytest.fail(f"module {module} belongs to no layer: add it to LAYERS (and to DESIGN.md's data flow)")
    return GROUPS[head]


def imported_modules(path: Path) -> set[str]:
    """The package modules `path` imports, relative imports resolved ("from ..nn import X" -> "nn")."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("vjepa_world"):
                    continue
                base = node.module.split(".")[1:]
            else:
                base = package[: len(package) - node.level + 1] + (
                    node.module.split(".") if node.module else []
                )
            for alias in node.names:  # `from . import distributed` names a module
                candidate = [*base, alias.name]
                is_module = (PACKAGE.joinpath(*candidate).with_suffix(".py")).is_file()
                found.add(".".join(candidate if is_module else base) or "__init__")
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("vjepa_world.") for a in node.names if a.name.startswith("vjepa_world.")
            }
    found.discard(module_name(path))
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "train.distributed" in graph["train.pretrain"]  # from . import distributed
    assert "nn" in graph["world_model"]  # from .nn import ...
    assert "checkpoints" in graph["nn.pretrained"]  # from ..checkpoints import ...
    assert "files" in graph["data.video"]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imports in sorted(graph.items()):
        layer, group = group_of(module)
        for target in sorted(imports):
            target_layer, target_group = group_of(target)
            if target_group != group and target_layer >= layer:
                where = f"{target} ({target_group}, layer {target_layer})"
                wrong.append(f"{module} ({group}, layer {layer}) imports {where}")
    return wrong


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*trail[trail.index(target) :], target]
            if target not in state and (cycle := visit(target, [*trail, target])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_every_import_goes_down_the_layers_or_stays_in_its_group():
    wrong = layer_violations(import_graph())
    assert not wrong, "imports against the layers of DESIGN.md:\n" + "\n".join(wrong)


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_catch_what_they_are_for():
    """The rules themselves, on made-up graphs: an upward import, a same-layer import between two
    groups, an unknown module, and a cycle inside one group."""
    assert layer_violations({"nn.vit": {"train.pretrain"}}) == [
        "nn.vit (nn, layer 2) imports train.pretrain (train, layer 5)"
    ]
    assert layer_violations({"eval.probing": {"train.schedules"}}) == [
        "eval.probing (eval, layer 5) imports train.schedules (train, layer 5)"
    ]
    assert layer_violations({"train.pretrain": {"nn", "files", "train.logs"}}) == []
    with pytest.raises(pytest.fail.Exception, match="belongs to no layer"):
        layer_violations({"scratch": set()})
    assert find_cycle({"nn.pretrained": {"checkpoints"}, "checkpoints": {"nn"}, "nn": {"nn.pretrained"}}) == [
        "checkpoints",
        "nn",
        "nn.pretrained",
        "checkpoints",
    ]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
