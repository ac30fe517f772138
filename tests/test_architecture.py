"""The shape of the package, checked: small modules and functions, one home for each name, no
import cycle, a fitter that is pure (no MLflow, no Ray) and layered, commands that are edges."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

from scalesweep import metrics as m

PACKAGE = Path(__file__).resolve().parents[1] / "scalesweep"
SOURCES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
LONG_OK = "# long:"
"""A function may pass the limit when a comment starting with this, on the line above its
`def`, says why (e.g. one numerical algorithm that reads best in one piece)."""


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_functions_are_small(path):
    # Rule: no module over 400 lines; no function over ~60 lines unless a `# long:` comment
    # above it says why.
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name} has {len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            excused = lines[first - 2].strip().startswith(LONG_OK)
            assert length <= MAX_FUNCTION_LINES or excused, f"{node.name}: {length} lines"


def test_metric_and_status_names_live_in_metrics_only():
    # Rule: the names that cross module borders are written once, in scalesweep/metrics.py;
    # anywhere else they are used through its constants (docstrings may mention them).
    names = {
        *m.STEP_METRICS,
        *m.ENDED_STATUSES,
        m.RUNNING,
        m.INIT_LOSS,
        m.FINAL_VAL_LOSS,
        m.FINAL_VAL_LOSS_AVG,
        m.LAST_FINITE_LOSS,
        m.PARAMS_NONEMBED,
    }
    found = []
    for path in SOURCES:
        if path.name == "metrics.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and node.value in names
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not found, "literal metric/status names outside metrics.py: " + ", ".join(found)


FIT = PACKAGE / "fit"
FIT_MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts) for p in FIT.rglob("*.py")
)


def test_fit_modules_import_neither_mlflow_nor_ray():
    # Rule: fits are pure functions over DataFrames; reading MLflow is the caller's edge.
    # Every module under fit/, imported: neither library is loaded.
    code = (
        "import importlib, sys\n"
        f"for name in {FIT_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(k for k in ('mlflow', 'ray') if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SOURCES}


def _imports(path: Path) -> set[str]:
    """Every name a module imports, wherever the import is (top level, in a function, under
    TYPE_CHECKING): `from a import b` counts as `a.b` when that is a module, else as `a`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in MODULES else node.module)
    return names


def _internal_imports(path: Path) -> set[str]:
    return {name for name in _imports(path) if name in MODULES}


def test_no_import_cycle_anywhere_in_the_package():
    # Rule: the package's modules import each other in one direction only, counting imports
    # inside functions and under TYPE_CHECKING (graphlib names the cycle if there is one).
    graph = {name: _internal_imports(path) - {name} for name, path in MODULES.items()}
    graphlib.TopologicalSorter(graph).prepare()


FIT_LAYERS = (
    ("fit.base", "fit.options", "fit.format", "fit.runs"),
    ("fit.numerics",),
    ("fit.laws",),
    ("fit.forecast",),
    ("fit.design",),
    ("fit.plots",),
    ("fit.kinds",),
    ("fit.report",),
    ("fit.pipeline",),
    ("fit",),
)
"""The fitter's layers, bottom up (scalesweep/fit/__init__.py): each imports only its own layer
and those below."""


def _fit_layer(module: str) -> int:
    short = module.removeprefix("scalesweep.")
    for index, prefixes in enumerate(FIT_LAYERS):
        if any(short == p or short.startswith(p + ".") for p in prefixes if p != "fit"):
            return index
    assert short == "fit", module
    return len(FIT_LAYERS) - 1


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("scalesweep.fit")])
def test_fit_layers_import_downward_only(module):
    # Rule: within fit/, a module imports from its own layer or a lower one (FIT_LAYERS): the
    # laws know nothing of plots, the registry nothing of the report, nothing of the pipeline.
    upward = [
        name
        for name in _internal_imports(MODULES[module])
        if name.startswith("scalesweep.fit") and _fit_layer(name) > _fit_layer(module)
    ]
    assert not upward, f"{module} imports from a higher layer: {upward}"


@pytest.mark.parametrize("path", sorted(FIT.rglob("*.py")), ids=lambda p: str(p.relative_to(FIT)))
def test_fit_does_not_import_the_sweep_tracking_mlflow_or_ray(path):
    # Rule: `scalesweep fit` sits below the Ray layer, and reading MLflow is the caller's
    # edge: nothing in fit/, at any depth, imports the sweep, tracking, MLflow or Ray.
    forbidden = ("scalesweep.sweep", "scalesweep.tracking", "scalesweep.sources", "mlflow", "ray")
    offenders = [
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not offenders


COMMANDS = PACKAGE / "commands"


@pytest.mark.parametrize("path", sorted(COMMANDS.glob("*.py")), ids=lambda p: p.name)
def test_no_command_imports_another(path):
    # Rule: a command is an edge; what two commands share lives below them (the fit pipeline,
    # the sources, the sweep), never in a command that the other imports.
    own = _module_name(path)
    others = [
        name
        for name in _internal_imports(path)
        if name.startswith("scalesweep.commands.") and name != own
    ]
    assert not others


def test_no_formatter_exemptions_in_the_package():
    # Rule: the formatter's layout is the layout; a line squeezed under a limit with
    # `# fmt: skip` is a module or function to split by concept instead.
    marked = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "fmt: skip" in line
    ]
    assert not marked


TRACKING = PACKAGE / "tracking"
MLFLOW_CLIENT_METHODS = {
    "create_experiment",
    "create_run",
    "delete_run",
    "get_experiment",
    "get_experiment_by_name",
    "get_metric_history",
    "get_run",
    "list_artifacts",
    "log_artifact",
    "log_artifacts",
    "log_batch",
    "log_metric",
    "log_param",
    "log_text",
    "search_experiments",
    "search_runs",
    "set_experiment_tag",
    "set_tag",
    "set_terminated",
    "update_run",
}
"""The `MlflowClient` methods the package calls (and the few close relatives it could)."""


def _outside_tracking() -> list[Path]:
    return [path for path in SOURCES if TRACKING not in path.parents]


def test_mlflow_is_imported_only_under_tracking():
    # Rule: scalesweep/tracking/ owns every MLflow call, so only its modules import mlflow
    # (counted at module level, inside functions and under TYPE_CHECKING alike).
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in _outside_tracking()
        for name in _imports(path)
        if name == "mlflow" or name.startswith("mlflow.")
    ]
    assert not offenders, "mlflow imported outside scalesweep/tracking/: " + ", ".join(offenders)


def test_no_mlflow_client_method_is_called_outside_tracking():
    # Rule: outside scalesweep/tracking/, code calls the contract's named operations
    # (`tracking.mark_failed`, `tracking.finish_parent`, ...), never a client method.
    offenders = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.func.attr}()"
        for path in _outside_tracking()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in MLFLOW_CLIENT_METHODS
    ]
    assert not offenders, "MLflow client calls outside scalesweep/tracking/: " + ", ".join(
        offenders
    )
