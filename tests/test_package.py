"""Package hygiene: import cost, the designed layout, an acyclic import graph, __all__.

The import graph is built statically (``ast``) from every module under ``src/lsstdrp``,
so it covers code paths that a test run does not import; imports inside functions and
``if TYPE_CHECKING:`` blocks count too, since the layering of DESIGN.md section 1 is
about dependencies, not only about import-time cycles.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import statistics
import subprocess
import sys
import time
import tomllib
import types
from pathlib import Path

import pytest

import lsstdrp

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lsstdrp"

#: The subpackages of DESIGN.md section 1.
DESIGN_SUBPACKAGES = (
    "core", "sim", "isr", "characterize", "psf", "jointcal", "coadd", "diffim",
    "detect", "deblend", "measure", "multifit", "forcedphot", "sso", "sensor",
)
#: Imported by ``import lsstdrp`` they would make it slow.
HEAVY = ("numpy", "scipy", "astropy", "galsim", "numba", "matplotlib", "tqdm")
NOT_BUILT = "Not built yet"


# -- helpers ------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Absolute name of ``from <level dots><target> import ...`` inside ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(module: str, path: Path) -> set[str]:
    """lsstdrp modules that ``module`` imports, anywhere in its source.

    A name that is not a module under src/lsstdrp is kept as is, so that
    :func:`test_every_lsstdrp_import_resolves` can report it.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            # ``from pkg import sub`` imports the submodule pkg.sub when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] == "lsstdrp" and n != module)
    return found


GRAPH: dict[str, set[str]] = {m: _imports(m, p) for m, p in MODULES.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def _subpackage(module: str) -> str:
    """lsstdrp.coadd._warp -> coadd; lsstdrp._errors -> _errors; lsstdrp -> lsstdrp."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)


# -- (a) import cost ---------------------------------------------------------------------
def test_import_lsstdrp_is_fast():
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        _run("import lsstdrp")
        walls.append(time.perf_counter() - t0)
    assert statistics.median(walls) < 1.0, f"`python -c 'import lsstdrp'` took {walls} s"


def test_import_lsstdrp_imports_nothing_heavy():
    code = (
        "import sys, json, lsstdrp\n"
        "lsstdrp.InvalidInputError, lsstdrp.__version__, dir(lsstdrp)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = set(json.loads(_run(code).stdout))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"`import lsstdrp` imports {heavy}"
    subpackages = sorted(m for m in loaded if m.startswith("lsstdrp.") and _subpackage(m) in DESIGN_SUBPACKAGES)
    assert not subpackages, f"subpackages must load lazily; `import lsstdrp` imported {subpackages}"


# -- (b) the designed layout -------------------------------------------------------------
def test_lazy_loader_knows_every_designed_subpackage():
    assert tuple(lsstdrp.SUBPACKAGES) == DESIGN_SUBPACKAGES
    assert set(DESIGN_SUBPACKAGES) <= set(dir(lsstdrp))


@pytest.mark.parametrize("name", DESIGN_SUBPACKAGES)
def test_designed_subpackage_exists_and_imports(name):
    assert (SRC / name / "__init__.py").is_file(), f"src/lsstdrp/{name}/__init__.py is missing"
    module = importlib.import_module(f"lsstdrp.{name}")
    assert getattr(lsstdrp, name) is module  # the lazy attribute is the same module
    assert (module.__doc__ or "").strip(), f"lsstdrp.{name} has no docstring"


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="nonesuch"):
        lsstdrp.nonesuch  # noqa: B018


# -- (c) the import graph ----------------------------------------------------------------
def test_resolver_handles_relative_imports():
    assert _resolve("lsstdrp.core", True, 1, "_mask") == "lsstdrp.core._mask"
    assert _resolve("lsstdrp.core._validate", False, 2, "_errors") == "lsstdrp._errors"
    assert _resolve("lsstdrp.core._validate", False, 1, None) == "lsstdrp.core"
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_the_known_imports():
    assert "lsstdrp._errors" in GRAPH["lsstdrp"]
    assert "lsstdrp.core._mask" in GRAPH["lsstdrp.core"]


def test_every_lsstdrp_import_resolves():
    missing = {m: sorted(t for t in targets if t not in MODULES) for m, targets in GRAPH.items()}
    missing = {m: t for m, t in missing.items() if t}
    assert not missing, f"imports of lsstdrp modules that do not exist: {missing}"


def test_no_import_cycle_between_modules():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_subpackages():
    collapsed: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        src = _subpackage(module)
        collapsed.setdefault(src, set()).update(_subpackage(t) for t in targets if _subpackage(t) != src)
    cycle = _find_cycle(collapsed)
    assert cycle is None, "subpackage import cycle: " + " -> ".join(cycle)


def test_core_imports_only_errors():
    # The root package is imported implicitly by any ``import lsstdrp.core``; importing it
    # (for ``__version__``) is harmless as long as it imports nothing but the errors itself.
    assert GRAPH["lsstdrp"] <= {"lsstdrp._errors"}, GRAPH["lsstdrp"]
    assert GRAPH["lsstdrp._errors"] == set()
    for module, targets in GRAPH.items():
        if _subpackage(module) == "core":
            outside = {t for t in targets if _subpackage(t) != "core" and t not in ("lsstdrp._errors", "lsstdrp")}
            assert not outside, f"{module} imports {sorted(outside)}; core imports nothing of lsstdrp but the errors"


def test_no_algorithm_imports_sim():
    for module, targets in GRAPH.items():
        if _subpackage(module) in ("sim", "demo"):
            continue
        sim = {t for t in targets if _subpackage(t) == "sim"}
        assert not sim, f"{module} imports {sorted(sim)}; only lsstdrp.demo may use the simulator"


def test_sim_imports_only_core():
    for module, targets in GRAPH.items():
        if _subpackage(module) == "sim":
            other = {t for t in targets if _subpackage(t) not in ("sim", "core", "_errors")}
            assert not other, f"{module} imports {sorted(other)}; the simulator shares no algorithm code"


# -- (d) __all__ -------------------------------------------------------------------------
def _public_names(module: types.ModuleType) -> list[str]:
    return [
        n for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    ]


@pytest.mark.parametrize("name", DESIGN_SUBPACKAGES)
def test_subpackage_all_is_complete_and_importable(name):
    module = importlib.import_module(f"lsstdrp.{name}")
    exported = _public_names(module)
    if not exported and not hasattr(module, "__all__"):
        return  # exports nothing
    assert hasattr(module, "__all__"), f"lsstdrp.{name} exports {exported} but defines no __all__"
    names = list(module.__all__)
    assert all(isinstance(n, str) for n in names)
    assert len(names) == len(set(names)), f"duplicates in lsstdrp.{name}.__all__"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"lsstdrp.{name}.__all__ names {missing}, which do not exist"
    unlisted = sorted(set(exported) - set(names))
    assert not unlisted, f"lsstdrp.{name} has public names missing from __all__: {unlisted}"
    ns: dict[str, object] = {}
    exec(f"from lsstdrp.{name} import *", ns)  # noqa: S102 - the star import users would write
    assert set(names) <= set(ns)


def test_top_level_all_is_importable():
    for n in lsstdrp.__all__:
        assert getattr(lsstdrp, n) is not None, n


# -- (e) docstring-only subpackages ------------------------------------------------------
@pytest.mark.parametrize("name", DESIGN_SUBPACKAGES)
def test_not_built_subpackages_define_nothing(name):
    init = SRC / name / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    body = [n for n in body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    if NOT_BUILT not in doc:
        assert body, f"lsstdrp.{name} is docstring-only: its docstring must say '{NOT_BUILT}'"
        return
    assert not body, f"lsstdrp.{name} says '{NOT_BUILT}' but its __init__ has code"
    for path in (SRC / name).rglob("*.py"):
        defs = [
            n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
        assert not defs, f"{path.relative_to(ROOT)} defines {defs} in a subpackage marked '{NOT_BUILT}'"
    module = importlib.import_module(f"lsstdrp.{name}")
    assert not [v for v in vars(module).values() if inspect.isfunction(v) or inspect.isclass(v)]


# -- (f) license ------------------------------------------------------------------------
def test_license_is_bsd3_and_declared():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    for clause in (
        "Redistributions of source code must retain",
        "Redistributions in binary form must reproduce",
        "Neither the name of the copyright holder nor the names of its",
    ):
        assert clause in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "BSD-3-Clause"
    assert "LICENSE" in project.get("license-files", ["LICENSE"])


def test_test_module_basenames_are_unique():
    # tests/ has no __init__.py files (rootdir-relative "prepend" imports): two test
    # modules with the same basename make the second fail to import under pytest.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"test modules with the same basename: {dupes}"
