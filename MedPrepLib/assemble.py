"""Assemble one discovered series into a Volume: slice order, 4D stacking, scaling, affine.

Slices are ordered by their position along the slice normal, never by file name or
InstanceNumber alone; frames sharing a position are ordered in time (temporal position,
acquisition number, acquisition time, instance number) to form the 4th dimension.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .diffusion import gradient_table
from .discovery import Series
from .errors import SeriesError
from .frames import Frame
from .geometry import cluster_positions, normal_of, stack_affine
from .pixels import FrameReader, is_colour, samples_per_pixel, stored_dtype
from .sidecar import dicom_fields
from .uih import is_uih
from .volume import RGB24, Volume
from .values import as_float, pixel_int


@dataclass
class _Slice:
    frame: Frame
    tile: Optional[int]          # index of the tile within a mosaic frame
    position: np.ndarray


def _number(ds, keyword: str) -> float:
    """A decimal string attribute as a float; 0 when absent, malformed ("x.y") or not finite."""
    value = as_float(ds.get(keyword, 0) or 0)
    return value if value is not None and math.isfinite(value) else 0.0


def mosaic_layout(fr: Frame, rows: int, cols: int) -> Tuple[int, int, int, int]:
    """(tiles down, tiles across, tile rows, tile columns) of a mosaic frame."""
    if fr.mosaic_grid is not None:
        down, across = fr.mosaic_grid
    else:
        # Siemens: a square of ceil(sqrt(n)) tiles, unused ones left blank.
        down = across = int(math.ceil(math.sqrt(fr.mosaic_slices)))
    return down, across, rows // down, cols // across


def _mosaic_slices(fr: Frame, rows: int, cols: int) -> Tuple[List[_Slice], int, int]:
    n = fr.mosaic_slices
    _, _, r, c = mosaic_layout(fr, rows, cols)
    ds = fr.ds
    if fr.tile_positions is not None:
        # UIH: every tile carries its own position; nothing to derive from the tiled image.
        return [_Slice(fr, k, np.asarray(p)) for k, p in enumerate(fr.tile_positions)], r, c
    if fr.orientation is None or fr.position is None or fr.pixel_spacing is None:
        raise SeriesError("mosaic without orientation, position or pixel spacing", fr.file.path)
    row = np.asarray(fr.orientation[:3])
    col = np.asarray(fr.orientation[3:])
    dr, dc = fr.pixel_spacing
    normal = np.asarray(fr.mosaic_normal) if fr.mosaic_normal is not None else normal_of(fr.orientation)
    step = _number(ds, "SpacingBetweenSlices") or _number(ds, "SliceThickness") or 1.0
    if fr.mosaic_grid is not None:
        # A grid whose per-tile positions are missing: its position is the first tile's corner.
        first = np.asarray(fr.position)
    else:
        # The Siemens mosaic's ImagePositionPatient is the corner of the whole tiled image; the first
        # slice's corner lies half the difference between mosaic and tile size further in.
        first = (np.asarray(fr.position) + row * dc * (cols - c) / 2.0 + col * dr * (rows - r) / 2.0)
    return [_Slice(fr, k, first + k * step * normal) for k in range(n)], r, c


def _scaling(frames: List[Frame]) -> Tuple[List[Tuple[float, float]], List[str]]:
    """Per-frame (slope, intercept), using Philips' precise values when the vendor scale is present."""
    notes: List[str] = []
    out = []
    philips = str(frames[0].ds.get("Manufacturer", "")).upper().startswith("PHILIPS")
    for fr in frames:
        slope, inter = fr.slope, fr.intercept
        if not (math.isfinite(slope) and slope != 0 and math.isfinite(inter)):
            # A NaN, infinite or zero rescale would wipe out the image.
            bad = f"invalid rescale slope/intercept {slope:g}/{inter:g} (e.g. {fr.file.path.name}): "
            if not any(n.startswith("invalid rescale") for n in notes):
                notes.append(bad + "1/0 assumed for the bad values")
            slope = slope if math.isfinite(slope) and slope != 0 else 1.0
            inter = inter if math.isfinite(inter) else 0.0
        ss = fr.philips_scale_slope
        if philips and ss:
            # Philips "precise" floating point value FP = DV / (RescaleSlope * ScaleSlope), the value
            # dcm2niix writes by default, so that quantitative maps compare across scans.
            rs = slope if slope else 1.0
            slope, inter = 1.0 / ss, inter / (rs * ss)
        out.append((slope, inter))
    if philips and frames[0].philips_scale_slope:
        notes.append("Philips precise (FP) scaling applied: values are DV/(RescaleSlope*ScaleSlope)")
    return out, notes


def _placed(fr: Frame) -> bool:
    return fr.position is not None and all(math.isfinite(v) for v in fr.position)


def _read_slices(groups: List[List[_Slice]], reader: FrameReader, data: np.ndarray, uniform: bool,
                 scale_of: dict) -> None:
    """Fill data[t, z] from one frame each; single-frame files are read by several threads at once."""
    local = threading.local()

    def fill(job: Tuple[int, int, _Slice]) -> None:
        t, z, s = job
        if uniform:
            reader.read_into(s.frame.file, s.frame.index, data[t, z])
            return
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(data.shape[2:], dtype=stored_dtype(s.frame.file.pixel_ds))
        reader.read_into(s.frame.file, s.frame.index, buf)
        slope, inter = scale_of[id(s.frame)]
        np.multiply(buf, slope, out=data[t, z], casting="unsafe")
        data[t, z] += inter

    jobs = [(t, z, s) for z, g in enumerate(groups) for t, s in enumerate(g)]
    # Reads release the GIL, so copying pixels from the page cache spreads over the cores. Frames
    # of one multi-frame file stay on one thread: its decoded pixels are cached per file.
    if len(jobs) >= 16 and all(s.frame.index is None for _, _, s in jobs):
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(fill, jobs))
    else:
        for job in jobs:
            fill(job)


def _read_mosaics(groups: List[List[_Slice]], reader: FrameReader, data: np.ndarray, rows: int, cols: int,
                  uniform: bool, scale_of: dict) -> None:
    """Fill data[t, z] from the tiles of mosaic frames, reading each mosaic once."""
    out_rows, out_cols = data.shape[2:]
    dtype = stored_dtype(groups[0][0].frame.file.pixel_ds)
    mosaic = np.empty((rows, cols), dtype=dtype)
    tiles = mosaic_layout(groups[0][0].frame, rows, cols)[1]
    last = None
    for z, g in enumerate(groups):
        for t, s in enumerate(g):
            if last is not s.frame:
                reader.read_into(s.frame.file, s.frame.index, mosaic)
                last = s.frame
            tr, tc = divmod(s.tile, tiles)
            tile = mosaic[tr * out_rows:(tr + 1) * out_rows, tc * out_cols:(tc + 1) * out_cols]
            if uniform:
                data[t, z] = tile
            else:
                slope, inter = scale_of[id(s.frame)]
                np.multiply(tile, slope, out=data[t, z], casting="unsafe")
                data[t, z] += inter


def _stored_from_top(groups: List[List[_Slice]]) -> bool:
    """Whether a series of single-slice files stores its slices from the top of the stack down
    (InstanceNumber descending along the normal), where dcm2niix then anchors the affine. Any other
    InstanceNumber order dcm2niix re-sorts bottom up, as it does the frames of a multi-frame object
    (dcm_qa_xa30 series 5, stored top down, is anchored at its bottom frame)."""
    first = [g[0] for g in groups]
    if len(first) < 2 or any(s.frame.index is not None or s.tile is not None for s in first):
        return False
    return all(a.frame.instance > b.frame.instance for a, b in zip(first, first[1:]))


def series_to_volume(series: Series) -> Volume:
    frames = series.frames
    fr0 = frames[0]
    ds0 = fr0.ds
    colour = is_colour(ds0)
    if samples_per_pixel(ds0) not in (1, 3):
        raise SeriesError(f"{samples_per_pixel(ds0)} samples per pixel are not supported", fr0.file.path,
                          "only grey-value (1) and colour (3) images can be converted")
    if colour and (pixel_int(ds0, "BitsAllocated", 8, fr0.file.path) != 8 or fr0.mosaic_slices):
        # NIfTI's colour type is RGB24; dcm2niix refuses other colour images too.
        raise SeriesError("only 8-bit colour images can be converted (NIfTI RGB24)", fr0.file.path)
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    warnings: List[str] = list(series.warnings)

    # 1. Every slice with its position.
    slices: List[_Slice] = []
    unplaced_step: Optional[float] = None  # slice spacing of frames that have no position
    if fr0.mosaic_slices:
        for fr in frames:
            s, tr, tc = _mosaic_slices(fr, rows, cols)
            slices.extend(s)
        out_rows, out_cols = tr, tc
    else:
        out_rows, out_cols = rows, cols
        # A position with NaN or infinity is as good as none.
        missing = [fr for fr in frames if not _placed(fr)]
        none_placed = len(missing) == len(frames)
        if missing and not none_placed:
            warnings.append(f"{len(missing)} slice(s) without ImagePositionPatient left out, e.g. "
                            f"{missing[0].file.path.name}")
            unplaced = {id(fr) for fr in missing}
            frames = [fr for fr in frames if id(fr) not in unplaced]
        if none_placed and len(frames) > 1:
            warnings.append("no ImagePositionPatient: slices ordered by InstanceNumber (frames in stored order), "
                            "geometry unknown (NIfTI qform/sform code 0)")
            thick = (_number(ds0, "SpacingBetweenSlices") or fr0.thickness or _number(ds0, "SliceThickness")
                     or 1.0)
            frames = sorted(frames, key=lambda f: (f.instance, f.time_key))
            slices = [_Slice(fr, None, np.array([0.0, 0.0, k * thick])) for k, fr in enumerate(frames)]
            unplaced_step = thick
        else:
            slices = [_Slice(fr, None, np.asarray(fr.position if _placed(fr) else (0.0, 0.0, 0.0)))
                      for fr in frames]

    orientation = fr0.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    pixel_spacing = fr0.pixel_spacing
    if pixel_spacing is None:
        warnings.append("no PixelSpacing or ImagerPixelSpacing: 1 mm assumed")
        pixel_spacing = (1.0, 1.0)
    pixel_spacing_source = "PixelSpacing" if "PixelSpacing" in ds0 else (
        "ImagerPixelSpacing" if "ImagerPixelSpacing" in ds0 else None)
    # One array for all frames: np.allclose per frame cost 18 ms per 300 frames.
    oriented = [fr.orientation for fr in frames if fr.orientation]
    if oriented and not np.allclose(np.asarray(oriented), orientation, atol=1e-3):
        warnings.append("slices differ slightly in orientation; the first slice's orientation is used")

    # 2. Order along the normal, then in time at each position.
    normal = normal_of(orientation)
    if fr0.mosaic_slices and fr0.mosaic_normal is not None:
        normal = np.asarray(fr0.mosaic_normal)
    dist = np.array([float(s.position @ normal) for s in slices])
    order = sorted(range(len(slices)), key=lambda i: (round(dist[i], 2), slices[i].frame.time_key,
                                                      slices[i].tile or 0))
    slices = [slices[i] for i in order]
    labels = cluster_positions(np.array([dist[i] for i in order]))
    groups: List[List[_Slice]] = [[] for _ in range(labels[-1] + 1)] if len(slices) else []
    for lab, s in zip(labels, slices):
        groups[lab].append(s)

    # Exact duplicates (same position and same time point) are dropped, and counted once per series.
    duplicates: List[_Slice] = []
    for g in groups:
        seen = set()
        keep = []
        for s in g:
            key = (s.frame.time_key, s.tile, s.frame.index)
            if key in seen and s.frame.mosaic_slices == 0:
                duplicates.append(s)
                continue
            seen.add(key)
            keep.append(s)
        g[:] = keep
    if duplicates:
        warnings.append(f"{len(duplicates)} frame(s) at duplicate positions left out, e.g. "
                        f"{duplicates[0].frame.file.path.name}")
    counts = [len(g) for g in groups]
    n_t = min(counts)
    if max(counts) != n_t:
        dropped = sum(c - n_t for c in counts)
        warnings.append(f"time points do not form complete volumes ({min(counts)} to {max(counts)} frames per "
                        f"slice position); {dropped} frame(s) beyond {n_t} volume(s) left out")
        for g in groups:
            del g[n_t:]
    n_z = len(groups)

    positions = np.array([g[0].position for g in groups])
    geom = stack_affine(orientation, pixel_spacing, positions, _number(ds0, "SliceThickness") or None,
                        anchor_last=_stored_from_top(groups))
    warnings.extend(geom.warnings)
    nominal = _number(ds0, "GantryDetectorTilt")
    if n_z > 2 and abs(abs(nominal) - geom.tilt_deg) > 0.5:
        # The tag is nominal and its sign vendor-specific (PS3.3 C.8.15.3.3); a stack resampled
        # after the scan keeps it while its positions are no longer sheared.
        warnings.append(f"GantryDetectorTilt is {nominal:g} degrees but the slice positions show a tilt of "
                        f"{geom.tilt_deg:.2f}: the geometry follows the positions")
    if unplaced_step is not None:
        # Frames without Plane Position/Orientation (Type 1 in every cross-sectional IOD) have no place
        # in the patient: like dcm2niix ("bogus spatial matrix"), the NIfTI says so (codes 0) instead
        # of claiming an orientation. The affine is the one NIfTI readers derive from the voxel size
        # alone (method 1: x flipped, centred), so the volume in memory and on disk agree.
        zooms = np.array([pixel_spacing[1], pixel_spacing[0], unplaced_step])
        centre = (np.array([out_cols, out_rows, len(groups)]) - 1) / 2.0
        geom.affine = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
        geom.affine[:3, 3] = -geom.affine[:3, :3] @ centre

    # 3. Pixels, stored values kept when one slope/intercept fits all frames.
    all_frames = [s.frame for g in groups for s in g]
    scales, notes = _scaling(all_frames)
    if colour:
        # Colour values are not rescaled (the Modality LUT applies to grey values only).
        scales, notes = [(1.0, 0.0)] * len(all_frames), []
    uniform = all(abs(a - scales[0][0]) < 1e-9 and abs(b - scales[0][1]) < 1e-9 for a, b in scales)
    scale_of = {id(fr): sc for fr, sc in zip(all_frames, scales)}
    dtype = RGB24 if colour else stored_dtype(ds0) if uniform else np.dtype(np.float32)
    if not uniform:
        warnings.append("rescale slope/intercept vary between slices: written as float32 real-world values")
    data = np.empty((n_t, n_z, out_rows, out_cols), dtype)
    reader = FrameReader()
    if fr0.mosaic_slices:
        _read_mosaics(groups, reader, data, rows, cols, uniform, scale_of)
    else:
        _read_slices(groups, reader, data, uniform, scale_of)
    slope, inter = scales[0] if uniform else (1.0, 0.0)

    meta = dicom_fields(ds0)
    if fr0.index is not None:
        # Multi-frame objects hold echo time and number per frame (MR Echo functional group), not at
        # the top: each output volume gets those of its own frames, as the classic files would say.
        if fr0.echo_time is not None:
            meta["EchoTime"] = fr0.echo_time / 1000.0
        if fr0.echo is not None:
            meta["EchoNumber"] = fr0.echo
    photometric = str(ds0.get("PhotometricInterpretation", ""))
    if photometric == "MONOCHROME1":
        # Invert so that high values are bright, as every viewer and model expects; the original
        # photometric interpretation is kept in the sidecar.
        bits = pixel_int(ds0, "BitsStored", 0) or pixel_int(ds0, "BitsAllocated", 16) or 16
        if dtype.kind == "u":
            mirror = (1 << bits) - 1
        elif dtype.kind == "i":
            mirror = -(1 << (bits - 1)) + (1 << (bits - 1)) - 1
        else:
            mirror = 0
        if dtype.kind in "iu":
            np.subtract(mirror, data, out=data, casting="unsafe")
            # Real-world value r becomes mirror*slope + 2*intercept - r; windows move with it.
            mirror_real = mirror * scales[0][0] + 2 * scales[0][1]
        else:
            np.negative(data, out=data)
            mirror_real = 0.0
        if "WindowCenter" in meta:
            meta["WindowCenterDICOM"] = meta["WindowCenter"]
            centers = meta["WindowCenter"]
            meta["WindowCenter"] = ([mirror_real - float(c) for c in centers] if isinstance(centers, list)
                                    else mirror_real - float(centers))
        meta["PhotometricInterpretation"] = "MONOCHROME2"
        meta["PhotometricInterpretationDICOM"] = "MONOCHROME1"
        meta["InvertedFromMonochrome1"] = True
    if colour:
        meta["ColorImage"] = "RGB24"  # stored as NIfTI RGB24 triplets, as dcm2niix writes colour images
    if pixel_spacing_source and fr0.index is None:
        # Projection radiographs often carry only ImagerPixelSpacing (at the detector plane).
        meta["PixelSpacingSource"] = pixel_spacing_source
    meta["RescaleSlope"] = float(scales[0][0])
    meta["RescaleIntercept"] = float(scales[0][1])
    if geom.tilt_deg > 0.01:
        meta["GantryTiltDegrees"] = round(geom.tilt_deg, 4)
    if geom.variable_spacing:
        meta["VariableSliceSpacing"] = True
    if n_z > 1:
        meta["SliceSpacing"] = float(abs(np.mean(np.diff(geom.distances))) if len(geom.distances) > 1 else 0)
    if fr0.mosaic_slices:
        meta["MosaicSlices"] = fr0.mosaic_slices
    if unplaced_step is not None:
        meta["PatientGeometryUnknown"] = True
    if all(s.frame.bvalue is not None for g in groups for s in g[:1]) and n_t > 1:
        meta["DiffusionBValues"] = [float(s.frame.bvalue or 0) for s in groups[0]]
    table = gradient_table([s.frame.bvalue for s in groups[0]], [s.frame.gradient for s in groups[0]],
                           orientation, geom.affine, image_space=is_uih(ds0)) if n_t > 1 else None
    if table is not None:
        meta["_gradient_table"] = table  # written as .bval/.bvec beside the NIfTI
    series_meta_postfix = series.postfix
    if series_meta_postfix:
        meta["MedPrepSeriesPart"] = series_meta_postfix.lstrip("_")

    array = data if n_t > 1 else data[0]
    vol = Volume(array=array, affine=geom.affine, slope=float(slope), inter=float(inter), meta=meta,
                 warnings=warnings + notes)
    vol.meta["_slice_positions_lps"] = positions
    vol.meta["_slice_normal"] = normal
    # Which file (path, 0-based frame or None) each slice k came from: annotations (SEG, RTSTRUCT)
    # that name their source images are placed on the grid by these. Paths only: headers not parsed.
    if not fr0.mosaic_slices:
        vol.meta["_slice_sources"] = [(str(g[0].frame.file.path), g[0].frame.index) for g in groups]
    return vol
