"""Decode the stored pixel values of frames into a caller-provided array.

Native little-endian pixel data (the bulk of hospital data) is read straight from the file into
the output buffer at the offset discovery recorded: no second header parse, no intermediate copy.
Everything else (compressed transfer syntaxes, big endian, odd layouts) goes through pydicom's
decoders, which use the pylibjpeg plug-ins (JPEG, JPEG-LS, JPEG 2000, RLE) when installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Dict, Optional, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .dicomfile import DicomFile
from .errors import SeriesError
from .values import pixel_int
from .pixeldata import EXPLICIT_LE, IMPLICIT_LE, PixelElement, pixel_element, transfer_syntax
from .volume import RGB24

NATIVE_LE = {IMPLICIT_LE, EXPLICIT_LE}
_PYDICOM_PREAMBLE = "Unable to decode as exceptions were raised by all available plugins: "


def stored_dtype(ds: Dataset, path: Optional[Union[str, Path]] = None) -> np.dtype:
    bits = pixel_int(ds, "BitsAllocated", 16, path)
    signed = pixel_int(ds, "PixelRepresentation", 0, path) == 1
    if bits not in (8, 16, 32):
        raise SeriesError(f"unsupported BitsAllocated={bits}", None, "only 8, 16 and 32 bit pixels are supported")
    return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")


def samples_per_pixel(ds: Dataset, path: Optional[Union[str, Path]] = None) -> int:
    return pixel_int(ds, "SamplesPerPixel", 1, path) or 1


def is_colour(ds: Dataset) -> bool:
    return samples_per_pixel(ds) == 3


def as_rgb(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Decoded colour pixels (..., 3) as RGB, whatever the photometric interpretation.

    pydicom 3 converts YBR_FULL / YBR_FULL_422 to RGB while decoding; pydicom 2 leaves that to the
    caller. YBR_ICT / YBR_RCT (JPEG 2000) come out of the decoder as RGB in both.
    """
    photometric = str(ds.get("PhotometricInterpretation", "RGB")).strip().upper()
    if photometric in ("YBR_FULL", "YBR_FULL_422") and int(pydicom.__version__.split(".")[0]) < 3:
        from pydicom.pixel_data_handlers.util import convert_color_space

        arr = convert_color_space(arr, photometric, "RGB")
    return arr


def fix_stored_bits(arr: np.ndarray, ds: Dataset) -> None:
    """Mask unsigned values to BitsStored and sign-extend signed ones, in place.

    Scanners leave garbage in the unused high bits (dcm_qa_12bit has 0xFFFF in 12-bit data).
    """
    allocated = pixel_int(ds, "BitsAllocated", 16) or 16
    stored = pixel_int(ds, "BitsStored", allocated) or allocated
    if stored >= allocated or stored <= 0 or arr.dtype.kind not in "iu":
        return
    shift = allocated - stored
    if arr.dtype.kind == "u":
        np.bitwise_and(arr, (1 << stored) - 1, out=arr)
    else:
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)


def _decode_quietly(ds: Dataset) -> np.ndarray:
    """The decoded pixel array, by GDCM only where no other installed plug-in decodes the transfer syntax.

    GDCM (python-gdcm, which dicom2nifti installs) writes its own and OpenJPEG's complaints about
    damaged data straight to the process's stderr, where they would break our one-line messages;
    pydicom tries it first. The other plug-ins raise instead, and are tried in pydicom's order.
    """
    try:
        from pydicom.pixels import get_decoder
        plugins = list(get_decoder(transfer_syntax(ds) or IMPLICIT_LE).available_plugins)
    except Exception:  # noqa: BLE001 - pydicom 2.4 (no such API), or a syntax pydicom cannot decode at all
        return ds.pixel_array
    quiet = [name for name in plugins if name != "gdcm"]
    if not quiet or len(quiet) == len(plugins):
        return ds.pixel_array
    failures = []
    for name in quiet:
        try:
            ds.pixel_array_options(decoding_plugin=name)
            return ds.pixel_array
        except Exception as exc:  # noqa: BLE001 - as pydicom's own loop over its plug-ins
            failures.append(str(exc))  # pydicom names the plug-in
    raise RuntimeError(" ".join(failures))


class FrameReader:
    """Reads frames of one series; caches decoded multi-frame files so each is decoded once."""

    def __init__(self) -> None:
        self._decoded: Dict[int, np.ndarray] = {}

    def read_into(self, f: DicomFile, frame_index: Optional[int], out: np.ndarray) -> None:
        """Fill `out` (rows, columns) with the stored values of one frame of `f`."""
        ds = f.pixel_ds
        if f.pixel_offset is None:
            raise SeriesError("no pixel data", f.path)
        rows, cols = pixel_int(ds, "Rows", 0, f.path), pixel_int(ds, "Columns", 0, f.path)
        if out.shape != (rows, cols):
            raise SeriesError(f"frame is {rows}x{cols}, expected {out.shape[0]}x{out.shape[1]}", f.path)
        if out.dtype == RGB24:
            arr = self._decode(f)
            frame = arr[frame_index or 0] if arr.ndim == 4 else arr
            out.view(np.uint8).reshape(rows, cols, 3)[...] = frame
            return
        # A bare data set without file meta is in DICOM's default transfer syntax.
        ts = transfer_syntax(ds) or IMPLICIT_LE
        dtype = stored_dtype(ds, f.path)
        if ts in NATIVE_LE and samples_per_pixel(ds, f.path) == 1 and dtype.itemsize * 8 == \
                pixel_int(ds, "BitsAllocated", 16, f.path):
            with open(f.path, "rb") as fh:
                found = pixel_element(f, fh, ts)
                if found is not None and not found.encapsulated:
                    self._read_native(f, fh, found, frame_index, out, dtype)
                    return
        arr = self._decode(f)
        out[...] = arr[frame_index or 0] if arr.ndim == 3 else arr

    @staticmethod
    def _read_native(f: DicomFile, fh: BinaryIO, found: PixelElement, frame_index: Optional[int],
                     out: np.ndarray, dtype: np.dtype) -> None:
        """One frame of native pixel data straight from the file into `out`."""
        ds = f.pixel_ds
        rows, cols = out.shape
        frame_bytes = rows * cols * dtype.itemsize
        n_frames = pixel_int(ds, "NumberOfFrames", 1, f.path) or 1
        if found.length < frame_bytes * n_frames:
            raise SeriesError(f"pixel data holds {found.length} bytes, {frame_bytes * n_frames} expected",
                              f.path, "the file is truncated or its header is wrong")
        if found.value_offset + frame_bytes * n_frames > f.size:
            raise SeriesError("file is truncated inside its pixel data", f.path)
        fh.seek(found.value_offset + (frame_index or 0) * frame_bytes)
        buf = out.view(dtype) if out.dtype == dtype else np.empty((rows, cols), dtype)
        if fh.readinto(memoryview(buf).cast("B")) != frame_bytes:
            raise SeriesError("file is truncated inside its pixel data", f.path)
        if buf is not out:
            out[...] = buf
        fix_stored_bits(out if out.dtype == dtype else buf, ds)

    def _decode(self, f: DicomFile) -> np.ndarray:
        key = id(f)
        if key in self._decoded:
            return self._decoded[key]
        try:
            full = pydicom.dcmread(str(f.path), force=True)
            arr = _decode_quietly(full)
        except Exception as exc:  # noqa: BLE001 - decoders raise many kinds on corrupt data
            # One line: plug-in errors span several.
            detail = " ".join(str(exc).split()).replace(_PYDICOM_PREAMBLE, "")[:160]
            raise SeriesError(f"cannot decode pixel data ({exc.__class__.__name__}: {detail})", f.path,
                              "the file may be corrupt, or a decoder plug-in is missing") from exc
        if is_colour(f.pixel_ds):
            arr = as_rgb(arr, f.pixel_ds)
        elif samples_per_pixel(f.pixel_ds) != 1:
            raise SeriesError(f"{samples_per_pixel(f.pixel_ds)} samples per pixel are not supported", f.path,
                              "only grey-value (1) and colour (3) images can be converted")
        arr = np.ascontiguousarray(arr)
        if arr.dtype.kind in "iu":
            fix_stored_bits(arr, f.pixel_ds)
        n_frames = pixel_int(f.pixel_ds, "NumberOfFrames", 1, f.path) or 1
        if n_frames > 1:
            self._decoded[key] = arr
        return arr
