"""Quality-control pictures: orthogonal mid-slices of a case before and after preprocessing.

One PNG per case: a row for the input and a row for the output (axial, coronal, sagittal, shown
in radiological convention with their physical aspect ratio), the label overlaid on the output,
each row annotated with shape, spacing and intensity range. `write_index` makes one HTML page of
all cases. Needs Pillow, imported here only so that everything else works without it.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .affine import voxel_spacing
from .atomic import atomic_path, atomic_open
from .errors import MedPrepError
from .preprocess.orient import reorient_array
from .volume import Volume, rgb_channels

PANEL = 220  # pixels on the longer side of each slice picture
PALETTE = np.array([[255, 64, 64], [64, 200, 64], [64, 128, 255], [255, 200, 0], [200, 64, 255],
                    [0, 220, 220]], np.float32)


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise MedPrepError("QA pictures need Pillow, which is not installed",
                           hint="pip install pillow (in Slicer: slicer.util.pip_install('pillow'))") from None
    return Image, ImageDraw, ImageFont


def mid_slices(array: np.ndarray, affine: np.ndarray) -> Tuple[List[np.ndarray], List[Tuple[float, float]]]:
    """Axial, coronal and sagittal mid-slices (rows, cols) and their pixel sizes (row mm, col mm)."""
    vol = array[0] if array.ndim == 4 else array
    if 1 in vol.shape:  # a 2D image (radiograph): one panel, as stored
        spacing = voxel_spacing(affine)[::-1]  # along z, y, x
        keep = [a for a in range(3) if vol.shape[a] > 1]
        keep = keep if len(keep) == 2 else [1, 2]
        return [vol.reshape([vol.shape[a] for a in keep])], [(spacing[keep[0]], spacing[keep[1]])]
    # LPS voxel order puts patient right on the left and anterior at the top of an axial slice.
    lps, aff = reorient_array(vol, affine, "LPS")
    sx, sy, sz = voxel_spacing(aff)
    nz, ny, nx = lps.shape
    axial = lps[nz // 2]
    coronal = lps[:, ny // 2, :][::-1]
    sagittal = lps[:, :, nx // 2][::-1]
    return [axial, coronal, sagittal], [(sy, sx), (sz, sx), (sz, sy)]


def _window(values: np.ndarray) -> Tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(finite.min()), float(finite.min()) + 1.0)


def _panel(slice2d: np.ndarray, pixel: Tuple[float, float], window: Tuple[float, float],
           label2d: Optional[np.ndarray]):
    Image, _, _ = _pil()
    if slice2d.dtype.names:  # colour (RGB24) voxels are shown as they are, without a window
        rgb = np.stack(rgb_channels(slice2d), axis=-1).astype(np.float32)
    else:
        lo, hi = window
        grey = np.clip((slice2d.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255
        rgb = np.repeat(grey[..., None], 3, axis=2)
    if label2d is not None:
        fg = label2d > 0
        colours = PALETTE[(label2d[fg].astype(np.int64) - 1) % len(PALETTE)]
        rgb[fg] = 0.55 * rgb[fg] + 0.45 * colours
    img = Image.fromarray(rgb.astype(np.uint8), "RGB")
    height, width = slice2d.shape[0] * pixel[0], slice2d.shape[1] * pixel[1]
    scale = PANEL / max(height, width, 1e-6)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return img.resize(size, Image.NEAREST if label2d is not None else Image.BILINEAR)


def _caption(name: str, volume: Volume) -> str:
    shape = "x".join(str(n) for n in volume.shape_xyz)
    spacing = "x".join(f"{s:.2f}" for s in volume.spacing)
    if volume.is_rgb:
        return f"{name}: {shape} voxels, {spacing} mm, colour (RGB)"
    values = volume.scaled()
    return (f"{name}: {shape} voxels, {spacing} mm, "
            f"range [{float(np.nanmin(values)):.4g}, {float(np.nanmax(values)):.4g}]")


def _font(size: int):
    _, _, ImageFont = _pil()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _draw_boxes(panel: Any, shape: Tuple[int, int], boxes: Sequence[Dict[str, Any]]) -> None:
    """Outline boxes (and cross points) given in the slice's pixels on its resized panel."""
    _, ImageDraw, _ = _pil()
    draw = ImageDraw.Draw(panel)
    sx, sy = panel.width / shape[1], panel.height / shape[0]
    for i, b in enumerate(boxes):
        x0, y0, _, x1, y1, _ = b["pixels"]
        colour = tuple(int(c) for c in PALETTE[i % len(PALETTE)]) if b["status"] != "dropped" else (128, 128, 128)
        if b["kind"] == "point":
            x, y = x0 * sx, y0 * sy
            draw.line([(x - 4, y), (x + 4, y)], fill=colour)
            draw.line([(x, y - 4), (x, y + 4)], fill=colour)
        else:
            draw.rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=colour)


def write_qa_png(before: Volume, after: Volume, label: Optional[Volume], path: Union[str, Path],
                 title: str = "", boxes: Optional[Tuple[Sequence[Dict[str, Any]], Sequence[Dict[str, Any]]]] = None
                 ) -> Path:
    """Write the before/after picture of one case to `path` (atomically).

    `boxes`: (boxes on the input, boxes on the output) as `boxes.transform_boxes` gives them, drawn
    on 2D images (radiographs), whose one panel shows the pixels as stored.
    """
    Image, ImageDraw, _ = _pil()
    rows = []
    for row, (name, vol, lab) in enumerate((("input", before, None), ("output", after, label))):
        values = vol.scaled()
        slices, pixels = mid_slices(values, vol.affine)
        labels = mid_slices(lab.array, lab.affine)[0] if lab is not None else [None] * len(slices)
        window = (0.0, 255.0) if vol.is_rgb else _window(values)
        panels = [_panel(s, p, window, lb) for s, p, lb in zip(slices, pixels, labels)]
        planar = values.shape[-3] == 1 and len(slices) == 1
        if boxes is not None and planar:
            _draw_boxes(panels[0], slices[0].shape, boxes[row])
        rows.append((_caption(name, vol), panels))
    pad, text_h = 8, 22
    width = max(sum(p.width for p in panels) + pad * (len(panels) + 1) for _, panels in rows)
    width = max(width, 560)
    height = text_h + sum(text_h + max(p.height for p in panels) + pad for _, panels in rows) + pad
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    draw.text((pad, 4), title, fill=(255, 255, 255), font=_font(15))
    y = text_h
    for caption, panels in rows:
        draw.text((pad, y + 4), caption, fill=(220, 220, 220), font=font)
        y += text_h
        x = pad
        for p in panels:
            canvas.paste(p, (x, y))
            x += p.width + pad
        y += max(p.height for p in panels) + pad
    path = Path(path)
    with atomic_path(path, overwrite=True) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def write_index(qa_dir: Union[str, Path], case_ids: List[str], title: str = "MedPrep QA") -> Path:
    """One HTML page showing every case's QA picture (the PNGs beside it)."""
    qa_dir = Path(qa_dir)
    cells = "\n".join(
        f'<figure><a href="{html.escape(c)}.png"><img src="{html.escape(c)}.png" loading="lazy"></a>'
        f"<figcaption>{html.escape(c)}</figcaption></figure>" for c in case_ids)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
            "<style>body{background:#181818;color:#ddd;font-family:sans-serif}"
            "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}"
            "img{width:100%}figure{margin:0}</style></head>\n"
            f"<body><h1>{html.escape(title)}: {len(case_ids)} cases</h1><main>\n{cells}\n</main></body></html>\n")
    target = qa_dir / "index.html"
    with atomic_open(target, "w", overwrite=True) as fh:
        fh.write(page)
    return target
