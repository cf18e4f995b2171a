"""Training cases as the statistics pass left them, kept on disk for the second pass."""
from __future__ import annotations

import contextlib
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .errors import MedPrepError
from .volume import Volume

STAGE_PREFIX = ".medprep-stage-"


class Stage:
    """Training cases as the steps before the last dataset-statistics step left them.

    The statistics pass has to run those steps (reading, resampling, ...) anyway; keeping their
    result on disk until the second pass saves doing them twice. The folder is private to the run
    (made by mkdtemp inside the output folder) and removed when the run ends; what a killed run
    left is removed by the next run into the same folder (`remove_leftovers`).
    """

    def __init__(self, out_dir: Path, index: int):
        self.index = index
        self.folder = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=out_dir))

    def _path(self, case_id: str) -> Path:
        return self.folder / f"{case_id}.pickle"

    # A staged case is its pickle with the voxel buffers kept out of it (pickle protocol 5), then
    # each buffer's bytes: loading reads them straight into new arrays, where an ordinary pickle
    # would first build a bytes object as large as the volume, a page fault for every 4 kB of it.
    def save(self, case_id: str, image: Volume, label: Optional[Volume]) -> None:
        from .atomic import atomic_open

        buffers: List[pickle.PickleBuffer] = []
        head = pickle.dumps((image, label), protocol=5, buffer_callback=buffers.append)
        with atomic_open(self._path(case_id), "wb", overwrite=True) as fh:
            fh.write(len(head).to_bytes(8, "little") + len(buffers).to_bytes(8, "little") + head)
            for buffer in buffers:
                raw = buffer.raw()
                fh.write(raw.nbytes.to_bytes(8, "little"))
                fh.write(raw)

    def take(self, case_id: str) -> Optional[Tuple[Volume, Optional[Volume]]]:
        """The staged case, its file removed: each is used once, and deleting a 30 MB file takes a
        while, better spent by the worker that read it than by the driver at the end of the run. A
        case run again (its worker died after this) reads its inputs again."""
        path = self._path(case_id)
        if not path.is_file():
            return None
        with open(path, "rb") as fh:  # written by this run, in its own private folder
            n_head, n_buffers = int.from_bytes(fh.read(8), "little"), int.from_bytes(fh.read(8), "little")
            head = fh.read(n_head)
            buffers = []
            for _ in range(n_buffers):
                buffer = np.empty(int.from_bytes(fh.read(8), "little"), np.uint8)
                if fh.readinto(memoryview(buffer)) != buffer.nbytes:
                    raise MedPrepError("a staged case is incomplete", path, "run again")
                buffers.append(buffer)
        path.unlink()
        return pickle.loads(head, buffers=buffers)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_leftovers(out_dir: Path) -> None:
    """What killed runs and workers left in `out_dir`: stage folders, and files cut short while being
    written under a temporary name (see `atomic`). One run at a time writes a folder."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    for folder in out_dir.glob(STAGE_PREFIX + "*"):
        shutil.rmtree(folder, ignore_errors=True)
    for part in out_dir.rglob(".medprep-*.part"):
        with contextlib.suppress(OSError):
            part.unlink()
