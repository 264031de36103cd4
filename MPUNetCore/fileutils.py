"""Safe file writing: outputs appear whole or not at all, and never replace a file unless asked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

# Multi-part extensions first, so that "case.nii.gz" keeps ".nii.gz".
_KNOWN_SUFFIXES = (".seg.nrrd", ".nii.gz", ".tar.gz")


def full_suffix(path: PathLike) -> str:
    """The file's format extension, multi-part ones (`.nii.gz`, `.seg.nrrd`) included."""
    name = Path(path).name.lower()
    for suffix in _KNOWN_SUFFIXES:
        if name.endswith(suffix):
            return Path(path).name[-len(suffix) :]
    return Path(path).suffix


def check_writable(path: PathLike, overwrite: bool) -> Path:
    """Refuse to replace an existing output unless `overwrite` is set.

    Args:
        path: the output file.
        overwrite: whether an existing file may be replaced.

    Returns:
        The path as a `Path`.

    Raises:
        FileExistsError: the file exists and `overwrite` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    return path


@contextlib.contextmanager
def atomic_output(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    The temporary file keeps the real extension so that writers choosing the format by extension
    (SimpleITK, torch) behave as for the final name. On any error, or a KeyboardInterrupt, the
    temporary file is removed and an existing output is left untouched.

    Args:
        path: the final output file; its folder is created if missing.
        overwrite: whether an existing file may be replaced.

    Yields:
        The temporary path to write to.
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{full_suffix(path)}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and path.exists():  # appeared while we were writing
            raise FileExistsError(f"{path} appeared while writing; pass --overwrite to replace it")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_of(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
