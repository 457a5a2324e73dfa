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
