"""Every third-party import is declared by its package and provided by its image's lock alone.

An image installs one lock with ``--no-deps`` and then the project's packages, so a module that
imports something missing from that lock starts in the dev venv but crashes in the container.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

#: installable package -> (its folder, the import package inside it)
PACKAGES = {
    "shard-format": (REPO_ROOT / "shared" / "shard_format", "shard_format"),
    "datavolume": (REPO_ROOT / "shared" / "datavolume", "datavolume"),
    "jobkit": (REPO_ROOT / "shared" / "jobkit", "jobkit"),
    "dataset-service": (REPO_ROOT / "services" / "dataset", "dataset_service"),
    "trainer-service": (REPO_ROOT / "services" / "trainer", "trainer_service"),
    "tin-client": (REPO_ROOT / "client", "tin_client"),
}
#: image lock -> the project's packages the image installs on top of it
IMAGES = {
    "dataset.lock": ["dataset-service"],
    "trainer.lock": ["trainer-service"],
}
FIRST_PARTY = {module for _, module in PACKAGES.values()}


def imported_modules(package_dir: Path) -> set[str]:
    """Top-level names of every absolute import in the package's modules, nested ones too."""
    names = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY}


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide ``module`` (canonical names)."""
    found = importlib.metadata.packages_distributions().get(module, [])
    return {canonicalize_name(d) for d in found}


def declared(pyproject: Path, extras: set[str] | None = None) -> set[Requirement]:
    """The requirements of a pyproject: its dependencies plus the named (default: all) extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    chosen = optional.keys() if extras is None else extras & optional.keys()
    lines = [*project.get("dependencies", []), *(r for e in chosen for r in optional[e])]
    return {Requirement(line) for line in lines}


def undeclared_imports(package_dir: Path, module: str, pyproject: Path) -> dict[str, set[str]]:
    """Third-party imports whose distribution the pyproject does not name: import -> dists."""
    names = {canonicalize_name(r.name) for r in declared(pyproject)}
    missing = {}
    for imported in sorted(third_party(imported_modules(package_dir / module))):
        dists = distributions_of(imported)
        if not dists & names:
            missing[imported] = dists or {"<not installed>"}
    return missing


def read_lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements" / name).read_text().splitlines():
        if line and not line.startswith("#"):
            dist, version = line.split("==")
            pins[canonicalize_name(dist)] = version
    return pins


def closure(requirements: set[Requirement]) -> set[str]:
    """Every distribution these requirements pull in, the project's own packages expanded from
    their pyprojects and the others from their installed metadata (environment markers applied)."""
    env = default_environment()
    seen: set[str] = set()
    todo = [(r, set(r.extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        markers_ok = req.marker is None or any(
            req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})
        )
        if not markers_ok or (name, tuple(sorted(extras))) in seen:
            continue
        seen.add((name, tuple(sorted(extras))))
        if name in PACKAGES:
            folder, _ = PACKAGES[name]
            todo += [(r, set(r.extras)) for r in declared(folder / "pyproject.toml", extras)]
            continue
        for line in importlib.metadata.requires(name) or []:
            sub = Requirement(line)
            wanted = sub.marker is None or any(
                sub.marker.evaluate({**env, "extra": e}) for e in (extras or {""})
            )
            if wanted:
                todo.append((sub, set(sub.extras)))
    return {name for name, _ in seen if name not in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_third_party_import_is_declared(package):
    folder, module = PACKAGES[package]
    missing = undeclared_imports(folder, module, folder / "pyproject.toml")
    assert not missing, f"{package} imports {missing} without declaring them in its pyproject"


@pytest.mark.parametrize("lock", IMAGES)
def test_image_lock_alone_provides_everything_its_packages_need(lock):
    pins = read_lock(lock)
    needed = closure({Requirement(p) for p in IMAGES[lock]})
    assert needed - pins.keys() == set(), f"{lock} lacks what its packages need"
    # And what it pins is what the dev environment tests against (but setuptools, which every
    # venv brings in its own version).
    for dist in needed - {"setuptools"}:
        assert importlib.metadata.version(dist) == pins[dist], dist


def test_the_check_catches_an_undeclared_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    source = "import os\nimport httpx\n\ndef f():\n    import numpy\n"
    (tmp_path / "pkg" / "mod.py").write_text(source)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "pkg"\ndependencies = ["numpy"]\n')
    assert undeclared_imports(tmp_path, "pkg", tmp_path / "pyproject.toml") == {"httpx": {"httpx"}}


def test_the_lock_check_expands_a_local_package_with_its_extras():
    needed = closure({Requirement("shard-format[tf]")})
    assert {"numpy", "pydantic", "keras", "tensorflow-cpu"} <= needed
    assert "tensorflow-cpu" not in closure({Requirement("shard-format")})
