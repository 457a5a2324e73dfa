"""Every Python snippet of the README and the guides runs as written, in order, as one session.

The snippets are taken from the ```python blocks of README.md and then of the guide
pages (docs/guide/, in the order of PAGES) and executed one after the other in one
namespace, as a reader going through them in one interpreter would; a block that
repeats one already run (the guides restate the chapter's net so that each page reads
on its own) is not run again. The
training snippet loads the real Fashion-MNIST through the project's data-directory
setting ($SIGNALPROP_DATA) and is run as written; only the data set is cut to its
first 640 training and 200 validation images by wrapping the loader, so that five
epochs of the 100-layer net take seconds instead of minutes.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

import pytest

from _data_dir import DATA, needs_data

ROOT = Path(__file__).resolve().parents[1]


#: The pages whose Python blocks run, in this order: each may use what earlier ones made.
PAGES = [
    "README.md",
    "docs/guide/layers.md",
    "docs/guide/diagnose.md",
    "docs/guide/meanfield.md",
    "docs/guide/train.md",
    "docs/guide/monitor.md",
    "docs/guide/real-models.md",
    "docs/guide/keras.md",
]


def _blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _snippets() -> list[tuple[str, str]]:
    """``(page, code)`` of every distinct Python block of PAGES, in order."""
    seen: set[str] = set()
    snippets = []
    for page in PAGES:
        for code in _blocks(page):
            if code not in seen:
                seen.add(code)
                snippets.append((page, code))
    return snippets


def test_the_readme_and_guides_have_python_snippets():
    assert len(_blocks("README.md")) >= 2
    assert len(_snippets()) >= 10


def test_every_guide_page_with_python_is_run():
    """A guide page added with Python blocks but left out of PAGES would go untested."""
    with_python = {
        str(page.relative_to(ROOT))
        for page in (ROOT / "docs" / "guide").glob("*.md")
        if _blocks(str(page.relative_to(ROOT)))
    }
    assert with_python <= set(PAGES)


@needs_data
def test_every_python_snippet_runs_as_written(monkeypatch, capsys, tmp_path):
    import signalprop.data

    monkeypatch.chdir(tmp_path)  # the snippets' relative paths (runs/...) land here

    monkeypatch.setenv("SIGNALPROP_DATA", str(DATA))
    real = signalprop.data.load_fashion_mnist

    def smaller(*args, **kwargs):
        data = real(*args, **kwargs)
        return dataclasses.replace(
            data,
            x_train=data.x_train[:640],
            y_train=data.y_train[:640],
            x_valid=data.x_valid[:200],
            y_valid=data.y_valid[:200],
        )

    monkeypatch.setattr(signalprop.data, "load_fashion_mnist", smaller)
    namespace: dict[str, object] = {}
    for number, (page, code) in enumerate(_snippets()):
        try:
            with warnings.catch_warnings():
                # The chapter's Keras code passes `input_shape=` to a layer, which Keras 3
                # warns is the old way, and builds the model all the same.
                warnings.filterwarnings("ignore", "Do not pass an `input_shape`", UserWarning)
                # NumPy 2 deprecations raised inside Keras's own fit (its progress bar).
                warnings.filterwarnings("ignore", category=DeprecationWarning, module="keras")
                exec(compile(code, f"{page} python block {number}", "exec"), namespace)
        except Exception as error:  # name the block that failed
            pytest.fail(f"{page} python block {number} failed: {error!r}\n{code}")
    history = namespace["history"]
    assert len(history.val_accuracy) == 5  # the training snippet ran its five epochs
    assert namespace["mf"].phase == "chaotic"
    monitor = namespace["monitor"]
    assert monitor.history.records and (tmp_path / "runs" / "watch" / "monitor.jsonl").is_file()
    keras_monitor = namespace["keras_monitor"]  # the chapter's Keras net, one epoch
    assert keras_monitor.history.records[0].step == 1  # type: ignore[attr-defined]
    assert (tmp_path / "runs" / "keras" / "monitor.jsonl").is_file()
