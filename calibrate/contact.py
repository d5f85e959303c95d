"""Contact sheet: a grid of images with row and column labels, for a person to look at."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

from sim.base.io import atomic_path

if TYPE_CHECKING:
    from collections.abc import Sequence

_BG, _FG = (255, 255, 255), (20, 20, 20)


def contact_sheet(
    rows: Sequence[Sequence[Image.Image | None]],
    columns: Sequence[str],
    row_labels: Sequence[str],
    path: str | Path,
    cell: int = 192,
    label_width: int = 260,
) -> Path:
    """Write a PNG grid: one row per entry of ``rows``, titled columns, a wrapped label left of each row.

    Images are scaled to ``cell`` pixels square (small test images with nearest-neighbour so
    their pixels stay visible); ``None`` leaves a blank cell.
    """
    font = ImageFont.load_default()
    title_h = 34
    width = label_width + cell * len(columns)
    height = title_h + cell * len(rows)
    sheet = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(columns):
        draw.multiline_text(
            (label_width + j * cell + 6, 4), "\n".join(textwrap.wrap(title, 28)[:2]), fill=_FG, font=font
        )
    for i, (images, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = title_h + i * cell
        lines = [w for line in label.split("\n") for w in textwrap.wrap(line, 40)]
        text = "\n".join(lines[: cell // 14])
        draw.multiline_text((6, y + 6), text, fill=_FG, font=font)
        for j, img in enumerate(images):
            if img is None:
                continue
            resample = Image.NEAREST if max(img.size) < cell else Image.LANCZOS
            sheet.paste(img.convert("RGB").resize((cell, cell), resample), (label_width + j * cell, y))
    dest = Path(path)
    with atomic_path(dest) as tmp:
        sheet.save(tmp, format="PNG")
    return dest
