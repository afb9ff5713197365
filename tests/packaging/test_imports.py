"""The rules the README states about who may import whom, checked on every import in the code,
lazy ones inside functions included (they once hid a cycle: ``predict`` and ``training.loop``).

- a library (``shared/``) imports no service and not the client;
- a service imports neither the other service nor the client; the client imports no service
  (it speaks HTTP);
- every package declares, in its pyproject, the project packages it imports;
- inside the trainer: ``model`` imports neither ``runs`` nor ``engine``; what the API process
  imports (``main``, ``api``, ``runs`` and the Keras-free ``inference`` modules) imports neither
  ``engine`` nor ``model``, nor Keras, TensorFlow or JAX (``tests/trainer/api/test_predict.py``
  checks the running process too);
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


def trainer_layer_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run back up the trainer's layers, or pull Keras into its Keras-free part."""
    keras_free = ("trainer_service.engine", "trainer_service.model", *KERAS_STACK)
    rules = {
        "trainer_service.model": ("trainer_service.runs", "trainer_service.engine"),
        "trainer_service.runs": keras_free,
        # what the API process runs: its routes, and the inference modules they use
        "trainer_service.main": keras_free,
        "trainer_service.api": keras_free,
        **{f"trainer_service.inference.{name}": keras_free
           for name in ("predictor", "process", "images", "card")},
    }  # fmt: skip
    broken = []
    for name, targets in graph.items():
        for layer, banned in rules.items():
            if name == layer or name.startswith(layer + "."):
                for target in targets:
                    if any(target == b or target.startswith(b + ".") for b in banned):
                        broken.append(f"{name} -> {target}")
    return sorted(broken)


def declared_project_packages(folder: Path) -> set[str]:
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    names = {line.split("[")[0].split(">")[0].split("=")[0].strip() for line in project.get(
        "dependencies", [])}  # fmt: skip
    return {name.replace("-", "_") for name in names}


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "trainer_service.engine.train" in graph["trainer_service.jobs"]  # inside a function
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
        ("trainer_service.jobs", "tin_client.client"),
        ("tin_client.cli", "jobkit.models"),
    ],
)
def test_a_forbidden_import_is_found(importer, imported):
    graph = {**import_graph()}
    graph[importer] = graph[importer] | {imported}
    assert forbidden_imports(graph) != []


def test_the_trainers_layers_import_only_downwards():
    assert trainer_layer_breaches(import_graph()) == []


def test_a_layer_breach_is_found():
    graph = {**import_graph()}
    graph["trainer_service.runs.history"] = graph["trainer_service.runs.history"] | {"keras"}
    graph["trainer_service.model.resnet"] = graph["trainer_service.model.resnet"] | {
        "trainer_service.engine.schedule"
    }
    graph["trainer_service.inference.predictor"] = graph["trainer_service.inference.predictor"] | {
        "jax"
    }
    assert trainer_layer_breaches(graph) == [
        "trainer_service.inference.predictor -> jax",
        "trainer_service.model.resnet -> trainer_service.engine.schedule",
        "trainer_service.runs.history -> keras",
    ]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_declares_the_project_packages_it_imports(package):
    folder = PACKAGES[package][0]
    used = {package_of(t) for name, targets in import_graph().items() for t in targets
            if package_of(name) == package} & set(PACKAGES)  # fmt: skip
    assert used - {package} <= declared_project_packages(folder)
