"""The rules the README states about who may import whom, checked on every import in the code,
lazy ones inside functions included (they once hid a cycle: ``predict`` and ``training.loop``).

- a library (``shared/``) imports no service and not the client;
- a service imports neither the other service nor the client; the client imports no service
  (it speaks HTTP);
- every package declares, in its pyproject, the project packages it imports;
- inside the trainer, its rooms stand on floors (:data:`TRAINER_FLOORS`) and every import runs
  down or stays in its room: rooms side by side never import each other (``engine`` and
  ``inference``), so the drawing has no arrow running up; no module of the package root imports
  ``runs``;
- what the API process imports (everything ``main`` reaches) never reaches the ``engine``, nor
  Keras, TensorFlow or JAX (``tests/trainer/api/test_classify.py`` checks the running process
  too), and ``runs`` never reaches Keras; nor do the predictor process (``inference.server``)
  and the local classify command, which load ONNX Runtime instead;
- no import cycle among all the project's modules.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

#: import package -> (its distribution folder, its role)
PACKAGES = {
    "shard_format": (REPO_ROOT / "shared" / "shard_format", "library"),
    "datavolume": (REPO_ROOT / "shared" / "datavolume", "library"),
    "jobkit": (REPO_ROOT / "shared" / "jobkit", "library"),
    "dataset_service": (REPO_ROOT / "services" / "dataset", "service"),
    "trainer_service": (REPO_ROOT / "services" / "trainer", "service"),
    "tin_client": (REPO_ROOT / "client", "client"),
}
KERAS_STACK = ("keras", "tensorflow", "jax")


def module_files() -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> file."""
    found = {}
    for package, (folder, _) in PACKAGES.items():
        for path in (folder / package).rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Everything ``path`` imports anywhere in the file: project modules by their dotted name
    ("from pkg import module" counts as pkg.module), other packages by their top-level name."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                targets.add(child if child in modules else node.module)
    return {t if t in modules else t.split(".")[0] for t in targets}


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules and outside packages it imports (not its own parents)."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        found = imports_of(path, modules) - {name}
        # A module's own package is imported before it; that edge is not a cycle.
        graph[name] = {t for t in found if not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_of(module: str) -> str:
    return module.split(".")[0]


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"importer -> imported"`` for every import that breaks a rule of the module docstring."""
    broken = []
    for name, targets in graph.items():
        role = PACKAGES[package_of(name)][1]
        for target in targets:
            other = package_of(target)
            if other not in PACKAGES or other == package_of(name):
                continue
            other_role = PACKAGES[other][1]
            if role == "library" and other_role != "library":
                broken.append(f"{name} -> {target} (a library imports a {other_role})")
            elif role == "service" and other_role != "library":
                broken.append(f"{name} -> {target} (a service imports a {other_role})")
            elif role == "client":
                broken.append(f"{name} -> {target} (the client imports a {other_role})")
    return sorted(broken)


#: The trainer's rooms, bottom floor first: a module imports its own room and the floors below.
#: The rooms of one floor stand side by side and never import each other.
TRAINER_FLOORS: list[tuple[str, ...]] = [
    ("trainer_service",),  # the package's own __init__
    ("trainer_service.settings",),
    ("trainer_service.model",),
    ("trainer_service.runs",),
    ("trainer_service.engine", "trainer_service.inference"),
    ("trainer_service.jobs",),
    ("trainer_service.sweeps",),
    ("trainer_service.api",),
    ("trainer_service.main", "trainer_service.__main__"),
]
#: The modules of the trainer package's root (what may not import ``runs``).
TRAINER_ROOT = ("trainer_service", "trainer_service.settings", "trainer_service.main",
                "trainer_service.__main__")  # fmt: skip


def room_of(module: str) -> tuple[int, str] | None:
    """(floor, room) of a trainer module: its longest room prefix; None outside the trainer."""
    found = None
    for floor, rooms in enumerate(TRAINER_FLOORS):
        for room in rooms:
            if (module == room or module.startswith(room + ".")) and (
                found is None or len(room) > len(found[1])
            ):
                found = (floor, room)
    return found


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Everything ``start`` imports, directly or not (outside packages by their top name)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen - {start}


def trainer_layer_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run up the trainer's floors or sideways between rooms, root modules that
    import ``runs``, and the Keras-free parts reaching Keras or the engine."""
    broken = []
    for name, targets in graph.items():
        here = room_of(name)
        for target in targets:
            there = room_of(target)
            if here is None or there is None or there[1] == here[1]:
                continue
            if there[0] > here[0]:
                broken.append(f"{name} -> {target} (up: {here[1]} below {there[1]})")
            elif there[0] == here[0]:
                broken.append(f"{name} -> {target} (sideways: {here[1]} beside {there[1]})")
            elif name in TRAINER_ROOT and there[1] == "trainer_service.runs":
                broken.append(f"{name} -> {target} (the package root imports runs)")
    keras_free = {
        "trainer_service.main": ("trainer_service.engine", *KERAS_STACK),  # the API process
        # the predictor process, and the same code run in-process by the classify command
        "trainer_service.inference.server": ("trainer_service.engine", *KERAS_STACK),
        "trainer_service.inference.classify": ("trainer_service.engine", *KERAS_STACK),
        **{name: KERAS_STACK for name in graph if name.startswith("trainer_service.runs")},
    }
    for start, banned in keras_free.items():
        for target in sorted(reach(graph, start)):
            if any(target == b or target.startswith(b + ".") for b in banned):
                broken.append(f"{start} reaches {target}")
    return sorted(broken)


def declared_project_packages(folder: Path) -> set[str]:
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    names = {line.split("[")[0].split(">")[0].split("=")[0].strip() for line in project.get(
        "dependencies", [])}  # fmt: skip
    return {name.replace("-", "_") for name in names}


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    # inside a function
    assert "trainer_service.engine.train" in graph["trainer_service.jobs.training"]
    assert "trainer_service.engine.evaluate" in graph["trainer_service.engine.train"]
    assert "keras" in graph["trainer_service.engine.train"]


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_a_cycle_is_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_libraries_services_and_the_client_import_only_what_they_may():
    assert forbidden_imports(import_graph()) == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("jobkit.service", "dataset_service.settings"),
        ("dataset_service.prepare", "trainer_service.runs.config"),
        ("trainer_service.jobs.training", "tin_client.client"),
        ("tin_client.cli", "jobkit.models"),
    ],
)
def test_a_forbidden_import_is_found(importer, imported):
    graph = {**import_graph()}
    graph[importer] = graph[importer] | {imported}
    assert forbidden_imports(graph) != []


def test_the_trainers_layers_import_only_downwards():
    assert trainer_layer_breaches(import_graph()) == []


@pytest.mark.parametrize(
    ("importer", "imported", "found"),
    [
        # engine and inference apart, both ways
        ("trainer_service.engine.train", "trainer_service.inference.export", "sideways"),
        ("trainer_service.inference.classify", "trainer_service.engine.objective", "sideways"),
        # the sweeps queue runs (of the job's kind) and never train; the routes start them
        ("trainer_service.sweeps.controller", "trainer_service.engine.train", "reaches"),
        ("trainer_service.jobs.training", "trainer_service.sweeps.spec", "up"),
        # the job below the routes (which queue it), and the app on top
        ("trainer_service.jobs.training", "trainer_service.api.schemas", "up"),
        ("trainer_service.api.runs", "trainer_service.main", "up"),
        # nothing runs up
        ("trainer_service.model.resnet", "trainer_service.runs.config", "up"),
        ("trainer_service.model.saved", "trainer_service.engine.train", "up"),
        ("trainer_service.runs.history", "trainer_service.inference.images", "up"),
        ("trainer_service.runs.card", "trainer_service.api.schemas", "up"),
        ("trainer_service.settings", "trainer_service.model.architecture", "up"),
        # the package root imports no runs/ module, even where the floors would allow it
        ("trainer_service.main", "trainer_service.runs.config", "the package root imports runs"),
        # the API process never reaches Keras or the engine, runs/ never Keras
        ("trainer_service.api.present", "trainer_service.model.resnet", "reaches keras"),
        ("trainer_service.inference.classifier", "jax", "reaches jax"),
        ("trainer_service.inference.models", "trainer_service.model.saved", "reaches keras"),
        ("trainer_service.inference.batching", "tensorflow", "server reaches tensorflow"),
        ("trainer_service.runs.history", "keras", "reaches keras"),
    ],
)
def test_a_layer_breach_is_found(importer, imported, found):
    graph = {**import_graph()}
    graph[importer] = graph[importer] | {imported}
    breaches = trainer_layer_breaches(graph)
    assert any(found in breach for breach in breaches), breaches


def test_every_trainer_module_has_a_room():
    trainer = [name for name in import_graph() if name.startswith("trainer_service")]
    assert [name for name in trainer if room_of(name) is None] == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_declares_the_project_packages_it_imports(package):
    folder = PACKAGES[package][0]
    used = {package_of(t) for name, targets in import_graph().items() for t in targets
            if package_of(name) == package} & set(PACKAGES)  # fmt: skip
    assert used - {package} <= declared_project_packages(folder)
