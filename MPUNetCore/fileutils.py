"""Safe file writing: outputs appear whole or not at all, and never replace a file unless asked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

#: Extensions recognised in file names (longest first so ``.seg.nrrd`` wins over ``.nrrd``).
KNOWN_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".dcm")
KNOWN_EXTENSIONS += (".vtk", ".tif", ".tiff", ".tar.gz")


def split_extension(path: PathLike) -> Tuple[str, str]:
    """Split a file name into its stem and its (possibly compound) extension.

    Args:
        path: a file name or path, e.g. ``"case-1.seg.nrrd"``.

    Returns:
        ``(stem, extension)``, e.g. ``("case-1", ".seg.nrrd")``; the extension keeps its case and is
        ``""`` for a name without one.
    """
    name = Path(path).name
    lower = name.lower()
    for ext in KNOWN_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], name[-len(ext) :]
    suffix = Path(name).suffix
    return (name[: -len(suffix)], suffix) if suffix else (name, "")


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
        raise FileExistsError(
            f"the output {path} already exists; choose another output name, or pass --overwrite to replace it"
        )
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
    stem, ext = split_extension(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=ext, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and path.exists():  # appeared while we were writing
            raise FileExistsError(
                f"the output {path} was created by something else while this run was writing it; it was "
                "left as it is. Choose another output name, or pass --overwrite to replace it"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600); outputs are ordinary files
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
