"""signalprop's import graph, read from its source: no circle, and every arrow points down.

The graph is drawn with ``ast`` from every module under ``src/signalprop``, nothing
imported. Every ``import`` statement counts, wherever it stands: at module level,
inside a function or a class (an import inside a function closes a circle as surely
as one at the top, only later), and under ``if TYPE_CHECKING:``. An arrow goes from
the importing module to the module it names:

* ``import signalprop.init`` and ``from signalprop.init import fans_for``: to
  ``signalprop.init``;
* ``from signalprop import init``: to the submodule ``signalprop.init``, since ``init``
  is one; ``from signalprop import __version__``: to the package ``signalprop`` itself
  (its ``__init__``, which imports the public surface);
* importing ``signalprop.diagnostics._report`` from outside ``signalprop.diagnostics``
  also runs ``signalprop.diagnostics``'s ``__init__``: an arrow to that package too.
  A module's own packages (``signalprop`` for every module) are being imported already
  when it runs: no arrow to them.

The layers, bottom first (:data:`LAYERS`). A module may import from a lower layer, and
from its own group (a package's modules import one another; the first test keeps those
arrows free of circles); two groups in one layer know nothing of each other.

0. The floor: argument checks (``_validation``), the statistics of a layer
   (``_stats``: pure functions on tensors), cancellation and progress lines, and which
   code made a result (``_provenance``: version and commit, for study records and every
   report).
1. Registries and data: activations, initializers (fans), the data set reader.
2. What is built from them: layers, gains, the data-free depth experiment.
3. The mean-field theory (on gains) and the example models (on layers).
4. The model reader (``_model``): which layers carry weights and which activations
   surround them. It takes the Keras twin reader by registration, never by import.
5. What reads a model through it: the hooks that record a layer (``_recorder``), the
   Keras twin reader (``_keras_twin``), the residual stream (``_residual``).
6. The tools: ``autoinit`` and ``diagnostics``.
7. The Monitor, ``diagnose`` over a training run.
8. ``signalprop.keras``: the tools and the Monitor for Keras models.
9. The package's public surface (``signalprop/__init__``), which imports all of the above.
10. The fast training path; 11. training and plots; 12. studies; 13. the CLI;
    14. ``python -m signalprop``.

And a private module or name (``_name``) is used only inside the package that holds
it and the packages below that: ``signalprop._model`` by all of signalprop,
``signalprop.diagnostics._report`` by ``signalprop.diagnostics`` alone (others take
what it offers from ``signalprop.diagnostics``). What two packages both need goes
down into a shared module (``_stats``, ``_recorder``, ``_model``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

#: The layers, bottom first: each a tuple of groups (a module, or a package with all
#: its modules). See the module's docstring for what each layer is.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "signalprop._validation",
        "signalprop._stats",
        "signalprop._cancel",
        "signalprop._progress",
        "signalprop._provenance",
    ),
    ("signalprop.activations", "signalprop.init", "signalprop.data"),
    ("signalprop.layers", "signalprop.gains", "signalprop.propagate"),
    ("signalprop.meanfield", "signalprop.examples"),
    ("signalprop._model",),
    ("signalprop._recorder", "signalprop._keras_twin", "signalprop._residual"),
    ("signalprop.autoinit", "signalprop.diagnostics"),
    ("signalprop.monitor",),
    ("signalprop.keras",),
    ("signalprop",),
    ("signalprop._fastpath",),
    ("signalprop.train", "signalprop.plots"),
    ("signalprop.study",),
    ("signalprop.cli",),
    ("signalprop.__main__",),
)

#: Imports of another package's private modules that are known and left for now: the
#: command line is being split into a package of its own, which takes these from
#: ``signalprop.study``'s public surface.
KNOWN_PRIVATE: dict[str, set[str]] = {}


@dataclass(frozen=True)
class Arrow:
    """One import: ``source`` imports ``target`` at ``line``, naming ``names``."""

    source: str
    target: str
    line: int
    names: tuple[str, ...] = ()


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name (a package by its own)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _packages(name: str) -> list[str]:
    """The packages that hold ``name``, outermost first: a.b.c -> [a, a.b]."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_arrows(root: Path, package: str) -> tuple[dict[str, Path], list[Arrow]]:
    """The modules of ``package`` under ``root`` and every import between them."""
    modules = _modules(root, package)
    arrows: list[Arrow] = []
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        own = set(_packages(source)) | ({source} if is_package else set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            named: dict[str, tuple[str, ...]] = {}  # module -> the names taken from it
            if isinstance(node, ast.Import):
                named = {alias.name: () for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importing module's package
                    anchor = source.split(".") if is_package else source.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in modules:
                        named.setdefault(sub, ())
                    else:
                        named[base] = (*named.get(base, ()), alias.name)
            for target, names in named.items():
                if target not in modules:
                    continue  # outside the package (torch, numpy, ...)
                for held in [*_packages(target), target]:
                    if held in modules and held not in own and held != source:
                        shown = names if held == target else ()
                        arrows.append(Arrow(source, held, node.lineno, shown))
    return modules, arrows


def find_cycle(arrows: list[Arrow]) -> list[Arrow] | None:
    """One circle of imports as its arrows (None when there is none)."""
    out: dict[str, list[Arrow]] = {}
    for arrow in arrows:
        out.setdefault(arrow.source, []).append(arrow)
    done: set[str] = set()
    for start in sorted(out):
        if start in done:
            continue
        path: list[Arrow] = []
        on_path = {start: 0}
        stack = [(start, iter(out.get(start, [])))]
        while stack:
            node, todo = stack[-1]
            arrow = next(todo, None)
            if arrow is None:
                stack.pop()
                done.add(node)
                del on_path[node]
                if path:
                    path.pop()
                continue
            if arrow.target in on_path:
                return [*path[on_path[arrow.target] :], arrow]
            if arrow.target not in done:
                path.append(arrow)
                on_path[arrow.target] = len(path)
                stack.append((arrow.target, iter(out.get(arrow.target, []))))
    return None


def _shown(arrows: list[Arrow]) -> str:
    return "\n".join(f"  {a.source} -> {a.target} (line {a.line})" for a in arrows)


def _group(module: str) -> tuple[int, str] | None:
    """The layer and group of ``module``: the group it is, or the longest package group
    that holds it (the top package ``signalprop`` is a group of its ``__init__`` alone)."""
    best: tuple[int, str] | None = None
    for level, groups in enumerate(LAYERS):
        for group in groups:
            holds = "." in group and _within(module, group)
            if (module == group or holds) and (best is None or len(group) > len(best[1])):
                best = (level, group)
    return best


def _private_owner(module: str) -> str | None:
    """The package whose private module ``module`` is (None: not private)."""
    parts = module.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _within(module: str, package: str) -> bool:
    """Whether ``module`` is ``package`` or one of its modules."""
    return module == package or module.startswith(package + ".")


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Arrow]]:
    return import_arrows(SOURCE, "signalprop")


def test_no_import_circle(graph: tuple[dict[str, Path], list[Arrow]]) -> None:
    modules, arrows = graph
    assert len(modules) > 30 and len(arrows) > 100  # the source was found and read
    cycle = find_cycle(arrows)
    assert cycle is None, "signalprop's imports go round in a circle:\n" + _shown(cycle or [])


def test_every_module_has_a_layer(graph: tuple[dict[str, Path], list[Arrow]]) -> None:
    modules, _ = graph
    missing = sorted(m for m in modules if _group(m) is None)
    assert not missing, f"place these modules in LAYERS: {missing}"


def test_every_arrow_points_down(graph: tuple[dict[str, Path], list[Arrow]]) -> None:
    _, arrows = graph
    upward = []
    for arrow in arrows:
        source, target = _group(arrow.source), _group(arrow.target)
        assert source is not None and target is not None
        if source[1] != target[1] and target[0] >= source[0]:
            upward.append(
                f"  {arrow.source} -> {arrow.target} (line {arrow.line}): layer {source[0]} "
                f"({source[1]}) -> layer {target[0]} ({target[1]})"
            )
    assert not upward, "imports that do not point down the layers:\n" + "\n".join(upward)


def test_no_module_imports_another_packages_private_names(
    graph: tuple[dict[str, Path], list[Arrow]],
) -> None:
    """A private module (``_name``) or name is its package's: its own modules, and the
    subpackages below it, may use it (``signalprop._model`` serves all of signalprop);
    another package reaches it through that package's ``__init__``."""
    modules, arrows = graph
    wrong = []
    for arrow in arrows:
        owner = _private_owner(arrow.target)
        known = any(
            _within(arrow.source, importer) and arrow.target in targets
            for importer, targets in KNOWN_PRIVATE.items()
        )
        if owner is not None and not _within(arrow.source, owner) and not known:
            wrong.append(f"{arrow.source} imports {arrow.target} (line {arrow.line})")
        package = modules[arrow.target].name == "__init__.py"
        owner = arrow.target if package else arrow.target.rpartition(".")[0]
        for name in arrow.names:
            private = name.startswith("_") and not name.startswith("__")
            if private and not _within(arrow.source, owner):
                wrong.append(f"{arrow.source} imports {name} from {arrow.target}")
    assert not wrong, "private names used outside their package:\n" + "\n".join(wrong)


# ---------------------------------------------------------------- the reader itself


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_circle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "def f():\n    from pkg import high\n    return high\n",
            "pkg/high.py": "from pkg.low import f\n",
        },
    )
    _, arrows = import_arrows(tmp_path, "pkg")
    cycle = find_cycle(arrows)
    assert cycle is not None
    assert {(a.source, a.target) for a in cycle} == {
        ("pkg.low", "pkg.high"),
        ("pkg.high", "pkg.low"),
    }


def test_a_package_init_on_the_way_closes_a_circle(tmp_path: Path) -> None:
    """``from pkg.sub._x import y`` runs ``pkg/sub/__init__``, which imports the importer."""
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/top.py": "X = 1\n",
            "pkg/sub/__init__.py": "from pkg.sub._x import y\nfrom pkg import top\n",
            "pkg/sub/_x.py": "y = 2\n",
            "pkg/user.py": "from pkg.sub._x import y\n",
        },
    )
    _, arrows = import_arrows(tmp_path, "pkg")
    assert find_cycle(arrows) is None
    assert Arrow("pkg.user", "pkg.sub", 1) in arrows  # the __init__ on the way
    assert Arrow("pkg.user", "pkg.sub._x", 1, ("y",)) in arrows
    _write(tmp_path, {"pkg/top.py": "import pkg.user\n"})
    _, arrows = import_arrows(tmp_path, "pkg")
    cycle = find_cycle(arrows)
    assert cycle is not None
    assert {a.source for a in cycle} == {"pkg.top", "pkg.user", "pkg.sub"}
