"""Package structure: no import cycles, every module imports, lazy names typed, one JSON sanitiser."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / "salus").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _runtime_imports(
    name: str, path: Path, modules: dict[str, Path], *, in_functions: bool = False
) -> set[str]:
    """salus modules imported when ``name`` is imported: module-level imports (not under
    TYPE_CHECKING), plus the parent packages an import runs; with ``in_functions`` also the imports
    inside functions and classes (what running the module's code imports)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif in_functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(node.body)
            elif in_functions and isinstance(node, ast.For | ast.While):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.If | ast.With):
                visit(node.body)
                visit(getattr(node, "orelse", []))
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)

    visit(tree.body)
    out = set()
    for mod in found:
        parts = mod.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))  # parents run first
    return {m for m in out if m in modules and m != name and not name.startswith(m + ".")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def dfs(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                found.append([*stack[stack.index(v) :], v])
            elif v not in state:
                dfs(v)
        stack.pop()
        state[u] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return found


@pytest.mark.parametrize("in_functions", [False, True], ids=["module-level", "with-function-level"])
def test_import_graph_has_no_cycles(in_functions: bool):
    """No circle and only downward imports, at import time and also through the imports inside
    functions (a function-level import that goes up is a circle waiting to happen)."""
    modules = _modules()
    graph = {m: _runtime_imports(m, p, modules, in_functions=in_functions) for m, p in modules.items()}
    assert sum(len(v) for v in graph.values()) > (450 if in_functions else 100)  # the parser sees them
    assert _cycles(graph) == []
    # the sub-packages are layered too: no two import each other at module level
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    packages: dict[str, set[str]] = {}
    for m, deps in graph.items():
        packages.setdefault(top(m), set()).update(top(d) for d in deps if top(d) != top(m))
    assert _cycles(packages) == [], packages
    # and they import only downwards at import time (heavier imports live inside functions)
    layers = [
        ("salus.errors",),
        ("salus._lazy", "salus._json", "salus._version", "salus._checks"),
        ("salus._io",),
        ("salus.sim",),
        ("salus.policies",),
        ("salus.signals",),
        ("salus.data",),
        ("salus.collect",),
        ("salus.predictor",),
        ("salus.monitor",),
        ("salus.jobs",),
        ("salus.cli", "salus"),
    ]
    level = {p: i for i, names in enumerate(layers) for p in names}
    assert set(packages) <= set(level), set(packages) - set(level)
    upward = {(p, d) for p, deps in packages.items() for d in deps if level[d] >= level[p]}
    assert not upward, f"imports that go up or sideways: {sorted(upward)}"
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]  # the check can fail


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(_modules())
    script = textwrap.dedent(
        """
        import importlib, sys
        from salus.errors import MissingDependencyError
        failed, skipped = [], []
        for name in sys.argv[1:]:
            try:
                importlib.import_module(name)
            except MissingDependencyError:
                skipped.append(name)
            except ModuleNotFoundError as exc:  # an optional dependency (lerobot, ray) is absent
                (failed if (exc.name or "").startswith("salus") else skipped).append(f"{name}: {exc}")
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print("skipped", skipped)
        if failed:
            sys.exit("\\n".join(failed))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _lazy_tables() -> dict[Path, tuple[dict[str, str], dict[str, str]]]:
    """Per package __init__ with a ``_LAZY`` table: (lazy name -> module, TYPE_CHECKING name -> module)."""
    out = {}
    for path in sorted((SRC / "salus").rglob("__init__.py")):
        tree = ast.parse(path.read_text())
        lazy: dict[str, str] | None = None
        typed: dict[str, str] = {}
        for node in tree.body:
            target = node.target if isinstance(node, ast.AnnAssign) else None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
            if isinstance(target, ast.Name) and target.id == "_LAZY":
                assert node.value is not None
                lazy = ast.literal_eval(node.value)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                for imp in node.body:
                    if isinstance(imp, ast.ImportFrom) and imp.module:
                        typed.update({(a.asname or a.name): imp.module for a in imp.names})
        if lazy is not None:
            out[path] = (lazy, typed)
    return out


def test_lazy_names_are_visible_to_type_checkers():
    tables = _lazy_tables()
    assert len(tables) >= 6
    for path, (lazy, typed) in tables.items():
        missing = {n: m for n, m in lazy.items() if typed.get(n) != m}
        assert not missing, f"{path}: add these to its `if TYPE_CHECKING:` imports: {missing}"
    assert (SRC / "salus" / "py.typed").is_file()
    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["salus"]


_MYPY_SKIP = (
    "torch.*,transformers.*,lerobot.*,mujoco.*,gymnasium.*,zarr.*,matplotlib.*,sklearn.*,scipy.*,"
    "safetensors.*,typer.*,rich.*,imageio.*,ray.*,PIL.*,huggingface_hub.*,accelerate.*,datasets.*,"
    "diffusers.*,numcodecs.*,fast_simplification.*"
)


def test_mypy_sees_real_types_through_the_public_api(tmp_path):
    """A user's script, checked by mypy against the installed package (py.typed + lazy names)."""
    pytest.importorskip("mypy")
    (tmp_path / "user.py").write_text(
        textwrap.dedent(
            """
            import salus
            from salus.monitor import Monitor
            from salus.policies import TorchPolicyAdapter
            from salus.predictor import TrainedPredictor

            reveal_type(Monitor)
            reveal_type(TrainedPredictor)
            reveal_type(TorchPolicyAdapter)
            reveal_type(salus.Monitor)
            reveal_type(Monitor.load)
            """
        )
    )
    # A plain user configuration; third-party libraries are skipped so the check takes seconds.
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\ncache_dir = {tmp_path / 'cache'}\n\n[mypy-{_MYPY_SKIP}]\nfollow_imports = skip\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if "Revealed type is" in line]
    assert proc.returncode == 0 and len(lines) == 5, proc.stdout + proc.stderr
    expected = [
        "-> salus.monitor.monitor.Monitor",
        "-> salus.predictor.checkpoint.TrainedPredictor",
        "-> salus.policies.generic.TorchPolicyAdapter",
        "-> salus.monitor.monitor.Monitor",
        "-> salus.monitor.monitor.Monitor",
    ]
    for line, want in zip(lines, expected, strict=True):
        assert want in line and 'is "Any"' not in line, line


def test_one_json_sanitiser_with_the_callers_options():
    from salus._json import to_json

    value = {
        1: np.float32(0.1234567891),
        "a": np.arange(3),
        "t": (np.float64("nan"), math.inf, 1.0 / 3.0),
        "n": {"b": np.bool_(True), "x": None},
        "o": Path("p"),
    }
    plain = to_json(value)
    assert plain["1"] == pytest.approx(0.1234567891, rel=1e-6) and type(plain["1"]) is float
    assert plain["a"] == [0, 1, 2] and type(plain["a"][0]) is int
    assert math.isnan(plain["t"][0]) and plain["t"][1] == math.inf and plain["n"] == {"b": True, "x": None}
    assert plain["o"] == Path("p")  # other types pass through by default
    strict = to_json(value, non_finite="null", other="str")
    assert strict["t"][:2] == [None, None] and strict["o"] == "p"
    assert to_json(value, digits=6)["t"][2] == 0.333333
    assert to_json([np.float64(2.0) / 3], digits=3) == [0.667]  # numpy scalars are rounded like floats


def test_no_private_copies_of_the_json_sanitiser():
    for path in (SRC / "salus").rglob("*.py"):
        text = path.read_text()
        for name in ("def _jsonable", "def _strict_json", "import _jsonable"):
            assert name not in text, f"{path}: use salus._json.to_json"


def test_failure_types_have_one_definition():
    from salus.predictor.config import DEFAULT_FAILURE_TYPES
    from salus.sim import FAILURE_TYPES, labels, spec

    assert DEFAULT_FAILURE_TYPES is FAILURE_TYPES is spec.FAILURE_TYPES is labels.FAILURE_TYPES
    literal = '("drop", "miss", "collision", "timeout")'
    holders = [p for p in (SRC / "salus").rglob("*.py") if literal in p.read_text()]
    assert holders == [SRC / "salus" / "sim" / "spec.py"]
