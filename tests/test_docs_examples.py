"""Every public name is in the API reference, with an example that runs.

The reference (mkdocs.yml, docs/reference/) renders each public module's ``__all__``
from the docstrings as Griffe reads them, so that is what is checked here: every name
of ``signalprop.__all__`` and of each public submodule's ``__all__`` has a docstring
with an example (``>>>`` lines, or a fenced code block where running it needs data
or minutes), every public module has a reference page, and the examples in constants'
docstrings, which ``pytest --doctest-modules`` does not see, run here.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import signalprop

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"


def _public_modules() -> list[str]:
    """signalprop and every submodule whose dotted name has no part starting with '_'."""
    names = ["signalprop"]
    for info in pkgutil.walk_packages(signalprop.__path__, "signalprop."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


MODULES = _public_modules()


def _package() -> Any:
    extensions = griffe.load_extensions("griffe_sphinx")  # `#:` comments, as the docs read them
    return griffe.load(
        "signalprop",
        search_paths=[str(SOURCE)],
        docstring_parser="google",
        extensions=extensions,
        resolve_aliases=True,
        resolve_external=False,
    )


@pytest.fixture(scope="module")
def package() -> Any:
    return _package()


def _documented(package: Any, module: ModuleType, name: str) -> Any:
    """The Griffe object the reference shows for ``module.name``."""
    value = getattr(module, name)
    found = package.modules_collection.get_member(f"{module.__name__}.{name}")
    if found.is_alias:
        found = found.final_target
    # `signalprop.autoinit` is the function at run time and the module to Griffe.
    if found.is_module != inspect.ismodule(value):
        found = package.modules_collection.get_member(f"{value.__module__}.{value.__qualname__}")
    return found


def _names() -> list[tuple[str, str]]:
    return [(name, member) for name in MODULES for member in importlib.import_module(name).__all__]


def _has_example(text: str) -> bool:
    return ">>>" in text or re.search(r"^\s*```", text, flags=re.M) is not None


def test_the_public_modules_are_found() -> None:
    assert {"signalprop", "signalprop.init", "signalprop.study", "signalprop.cli"} <= set(MODULES)
    assert len(_names()) > 200


@pytest.mark.parametrize("module", MODULES)
def test_every_public_module_has_a_reference_page(module: str) -> None:
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs/reference").glob("*.md"))
    assert re.search(rf"^::: {re.escape(module)}$", pages, flags=re.M), module


def test_every_top_level_name_is_listed_on_the_reference_front_page() -> None:
    page = (ROOT / "docs/reference/index.md").read_text(encoding="utf-8")
    missing = [
        name for name in signalprop.__all__ if name != "__version__" and f"`sp.{name}`" not in page
    ]
    assert not missing


def test_every_public_name_has_an_example(package: Any) -> None:
    missing = []
    for module_name, name in _names():
        found = _documented(package, importlib.import_module(module_name), name)
        text = found.docstring.value if found.docstring else ""
        if not _has_example(text):
            missing.append(f"{module_name}.{name} ({found.path})")
    assert not missing, "no example in the docstring of:\n" + "\n".join(missing)


def test_the_constants_examples_run(package: Any) -> None:
    """The examples of attributes' docstrings (doctest finds only those of modules,
    classes and functions), each run in its module's namespace."""
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    seen = set()
    for module_name, name in _names():
        found = _documented(package, importlib.import_module(module_name), name)
        if not found.is_attribute or found.path in seen or not found.docstring:
            continue
        seen.add(found.path)
        home = importlib.import_module(found.parent.path)
        test = parser.get_doctest(found.docstring.value, dict(vars(home)), found.path, None, 0)
        runner.run(test)
    assert len(seen) > 20
    result = runner.summarize(verbose=False)
    assert result.failed == 0
    assert result.attempted > 20
