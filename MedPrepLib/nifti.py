"""NIfTI-1 output and input.

The header comes from nibabel; the voxels are streamed from the Volume's C-ordered buffer (which
is NIfTI's on-disk order) without a copy. `.nii.gz` is compressed with ISA-L's multi-threaded
gzip at its fastest level: dcm2niix-compatible files at a fraction of zlib's time.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np

from . import __version__
from .atomic import atomic_path
from .errors import MedPrepError
from .geometry import qform_frame
from .volume import RGB24, Volume

# nibabel (with scipy, 0.2 s) is imported by the functions that read or write a file: a dataset run's
# driver imports this module without ever writing an image itself.
if TYPE_CHECKING:
    import nibabel as nib

GZIP_LEVEL = 1
# Voxels move in 1 MB pieces: gzip's readinto decompresses into a temporary of the piece's size.
_BLOCK = 1 << 20
_gzip_threads = 2


def gzip_threads() -> int:
    """Compression threads for .nii.gz in this process (see `set_gzip_threads`)."""
    return _gzip_threads


def set_gzip_threads(threads: int) -> None:
    """Compression threads for .nii.gz in this process (like ITK's global thread count): a dataset
    run gives each worker its share of the CPUs; 1 compresses in the calling thread."""
    global _gzip_threads
    _gzip_threads = max(1, int(threads))


def nifti_header(volume: Volume) -> nib.Nifti1Header:
    import nibabel as nib  # without pydicom unless it is loaded already: see lean_imports.py

    hdr = nib.Nifti1Header()
    arr = volume.array
    hdr.set_data_dtype(arr.dtype)
    shape = volume.shape_xyz
    hdr.set_data_shape(shape)
    zooms = list(volume.spacing)
    if len(shape) == 4:
        zooms.append(float(volume.meta.get("RepetitionTime") or 1.0))
    hdr.set_zooms(zooms[: len(shape)])
    # Code 0 (unknown) where the DICOM did not say where the voxels are in the patient.
    code = 0 if volume.meta.get("PatientGeometryUnknown") else 1
    hdr.set_sform(volume.affine, code=code)
    hdr.set_qform(qform_frame(volume.affine) if volume.is_sheared else volume.affine, code=code)
    hdr.set_xyzt_units("mm", "sec")
    if volume.slope != 1.0 or volume.inter != 0.0:
        hdr["scl_slope"] = volume.slope
        hdr["scl_inter"] = volume.inter
    else:
        hdr["scl_slope"] = 1.0
        hdr["scl_inter"] = 0.0
    # Nothing identifying goes into free-text header fields.
    hdr["descrip"] = f"MedPrep {__version__}".encode()
    hdr["aux_file"] = b""
    hdr["intent_name"] = b""
    hdr["vox_offset"] = 352
    return hdr


def _write_stream(fh, volume: Volume) -> None:
    hdr = nifti_header(volume)
    fh.write(hdr.binaryblock)
    fh.write(b"\x00\x00\x00\x00")  # no extensions
    arr = volume.array
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.names:
        # RGB24 triplets: memoryview cannot take structured items, their bytes are the same.
        arr = arr.view(np.uint8) if arr.flags.c_contiguous else np.ascontiguousarray(arr).view(np.uint8)
    # A strided array (a reoriented view, 3D or 4D) goes out one 2D slice at a time, never copied whole
    # (reshaping such a view to merge its outer axes would copy all of it).
    slabs = [arr] if arr.flags.c_contiguous else (arr[index] for index in np.ndindex(*arr.shape[:-2]))
    for slab in slabs:
        mem = memoryview(np.ascontiguousarray(slab).reshape(-1)).cast("B")
        for start in range(0, len(mem), _BLOCK):
            fh.write(mem[start:start + _BLOCK])


def write_nifti(volume: Volume, path: Union[str, Path], gz: bool = True, overwrite: bool = False) -> Path:
    """Write `volume` to `path` atomically; `gz` picks .nii.gz compression."""
    path = Path(path)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            if gz:
                from isal import igzip, igzip_threaded

                with (igzip_threaded.open(tmp, "wb", compresslevel=GZIP_LEVEL, threads=_gzip_threads)
                      if _gzip_threads > 1 else igzip.open(tmp, "wb", compresslevel=GZIP_LEVEL)) as fh:
                    _write_stream(fh, volume)
            else:
                with open(tmp, "wb") as fh:
                    _write_stream(fh, volume)
    except FileExistsError as exc:
        raise MedPrepError("output exists", path, "use --overwrite to replace it") from exc
    return path


def _read_into(fh: BinaryIO, arr: np.ndarray) -> None:
    mem = memoryview(arr.reshape(-1)).cast("B")
    done = 0
    while done < len(mem):
        n = fh.readinto(mem[done:done + _BLOCK])
        if not n:
            raise EOFError(f"the file ends after {done} of {len(mem)} bytes of voxel data")
        done += n


def is_colour_nifti(path: Union[str, Path]) -> bool:
    """Whether a NIfTI file holds colour (RGB24) voxels, from its header alone. False for a file
    nibabel cannot read: reading it reports why."""
    import nibabel as nib

    try:
        return nib.load(str(path)).header.get_data_dtype() == RGB24
    except Exception:  # noqa: BLE001 - nibabel raises many kinds on bad files
        return False


def read_nifti(path: Union[str, Path]) -> Volume:
    """Read a NIfTI-1/2 file; stored values and scaling are kept apart as in the file.

    nibabel parses the header; the voxels are read straight into one array in the Volume's
    (z, y, x) order. nibabel's own path for .nii.gz holds the decompressed bytes and the array at
    the same time, and decompresses with zlib where ISA-L is several times faster.
    """
    import nibabel as nib

    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            # Decompression cannot be split over threads; a reader thread would only add a copy and
            # compete with the other workers of a dataset run.
            from isal import igzip

            opener = igzip.open(path, "rb")
        else:
            opener = open(path, "rb")
        with opener as fh:
            head = fh.read(4)
            sizeof_hdr = {int.from_bytes(head, "little"), int.from_bytes(head, "big")}
            kind = nib.Nifti1Header if 348 in sizeof_hdr else nib.Nifti2Header if 540 in sizeof_hdr else None
            if kind is None:
                raise ValueError("no NIfTI header")
            head += fh.read(kind.sizeof_hdr - 4)
            header = kind.from_fileobj(io.BytesIO(head))
            shape = header.get_data_shape()
            dtype = header.get_data_dtype()
            offset = int(header.get_data_offset())
            if offset < len(head):
                raise ValueError("voxel data inside the header")
            fh.read(offset - len(head))  # extensions: nothing of ours needs them
            # NIfTI stores x fastest: that is C order for the reversed shape, i.e. (.., z, y, x).
            data = np.empty(tuple(reversed(shape)), dtype)
            _read_into(fh, data)
        slope, inter = header.get_slope_inter()
        affine = header.get_best_affine()
    except Exception as exc:  # noqa: BLE001 - nibabel and gzip raise many kinds on bad files
        raise MedPrepError(f"cannot read NIfTI ({exc.__class__.__name__})", path,
                           "check that the file is a complete .nii or .nii.gz") from exc
    if not dtype.isnative:
        data = data.astype(dtype.newbyteorder("="))
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return Volume(array=data, affine=np.asarray(affine, dtype=float), slope=slope, inter=inter)
