"""The package's folders are rooms in layers: a module imports only from its own room or from rooms below it, and
the module-level imports have no cycles. Read from the source (ast), function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentsync"

# Lowest first. A room is a sub-package (or a top-level module); rooms on one line are independent of each other.
LAYERS = [
    {"errors"},  # the one exception type for a user's input
    {"devices", "cli_common", "checkpoints", "lazy"},  # shared leaves
    {"media"},  # file I/O at the model's rates
    {"faces", "models"},  # stage rooms: face analysis and paste-back; the networks
    {"sync"},  # SyncNet scoring (Sync-C / Sync-D)
    {"tiny"},  # tiny random checkpoints in the real formats (tests, benchmarks, smoke mode)
    {"inference"},  # the lip-sync pipeline and its stages
    {"data", "batch", "app_support"},  # beside the pipeline: the data toolchain, batch dubbing, the app's helpers
    {"training"},  # uses the data toolchain's stages and the pipeline (validation)
    {"__init__", "__main__", "pipeline"},  # the package's entry points and the old pipeline path (a re-export)
]
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("latentsync"):
            for alias in node.names:  # `from latentsync import media` imports the module latentsync.media
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                    (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").exists()  # fmt: skip
                found.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("latentsync")}
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_room_has_a_layer():
    rooms = {room_of(m) for m in all_modules()}
    assert rooms <= set(LAYER_OF), f"rooms without a layer in this test: {sorted(rooms - set(LAYER_OF))}"


def test_no_room_imports_a_room_above_it():
    wrong = []
    for module, path in all_modules().items():
        source = room_of(module)
        for target in imports(path):
            # the package itself: its one function, load_pipeline, is a lazy wrapper of the pipeline's loader
            target_room = "inference" if target == "latentsync" else room_of(target)
            if source not in ("__init__", "__main__") and target_room != source \
                    and LAYER_OF[target_room] >= LAYER_OF[source]:  # fmt: skip
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_module_level_imports_have_no_cycles():
    modules = all_modules()
    graph = {m: {t for t in imports(p, top_level_only=True) if t in modules and t != m} for m, p in modules.items()}
    # a package's __init__ re-exporting its own modules is the usual shape, not a cycle to break
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_layering_test_sees_a_wrong_import(tmp_path):
    """The check itself can fail: a media module importing the pipeline is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from latentsync.inference.pipeline import LipSyncOptions\n")
    assert imports(bad) == {"latentsync.inference.pipeline"}
    assert LAYER_OF[room_of("latentsync.inference.pipeline")] > LAYER_OF[room_of("latentsync.media.decode")]
