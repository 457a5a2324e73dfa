"""One check for the PNG files the tests make: something was drawn."""

from __future__ import annotations

from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """A PNG with something drawn: many distinct colours, not a blank or one-colour canvas."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = imread(path)[..., :3].reshape(-1, 3)
    colours = {tuple(p) for p in (pixels[:: max(1, len(pixels) // 20000)] * 255).astype(int)}
    assert len(colours) > 50  # axes, text and lines in several colours
    assert pixels.std() > 0.05


def assert_text_inside(figure) -> None:  # type: ignore[no-untyped-def]
    """Everything each panel draws (its title, axis and tick labels, legend, colour bar)
    lies within the figure's canvas, not cut at its edge: rendered at the figure's size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    bounds = figure.bbox
    for ax in figure.axes:
        box = ax.get_tightbbox(renderer)
        inside = (
            box.x0 >= bounds.x0 - 1
            and box.y0 >= bounds.y0 - 1
            and box.x1 <= bounds.x1 + 1
            and box.y1 <= bounds.y1 + 1
        )
        name = ax.get_title() or ax.get_ylabel()
        assert inside, f"panel {name!r} is cut off: {box.extents} outside {bounds.extents}"
