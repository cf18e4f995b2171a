"""Atomic output: write under a temporary name in the target folder, then rename.

An interrupted or failed run therefore never leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Union


@contextlib.contextmanager
def atomic_path(target: Union[str, Path], overwrite: bool = False, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target`, with `mode`, when the block succeeds.

    The temporary file is created 0600 and only then given `mode`, whatever the umask: a private
    file (mode 0o600) is never readable by others, not even while it is being written.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".medprep-", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(target: Union[str, Path], mode: str = "wb", overwrite: bool = False,
                permissions: int = 0o644) -> Iterator[IO[Any]]:
    with atomic_path(target, overwrite=overwrite, mode=permissions) as tmp:
        with open(tmp, mode) as fh:
            yield fh


def write_json(target: Union[str, Path], obj: Any, overwrite: bool = False, permissions: int = 0o644) -> None:
    with atomic_open(target, "w", overwrite=overwrite, permissions=permissions) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False, allow_nan=False, default=str)
        fh.write("\n")
