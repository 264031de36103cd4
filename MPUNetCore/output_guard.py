"""Guards every output passes before any work: never onto an input, a 3-D format, one run at a time.

Shared by `mpunet segment`/`evaluate`, `Training export`, the Slicer batch script and the Slicer module,
so they refuse the same things with the same words:

* `refuse_outputs_onto_inputs`: an output that is one of the inputs (same path after normalisation,
  `./`, a symbolic or a hard link) is refused whatever the flags (`--overwrite` included).
* `check_label_map_format`: label maps only go to formats that hold a 3-D image with its geometry.
* `reserve_output`: a run reserves its outputs when it starts, with an exclusive lock file beside each
  one, so that a second run writing the same file refuses at once instead of after all its work.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

from MPUNetCore.fileutils import split_extension

PathLike = Union[str, "os.PathLike[str]"]

#: Formats a label map may be written to: one file holding a 3-D image with spacing, origin, direction.
LABEL_MAP_FORMATS = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha")
#: Formats spread over two files (header + data): their writing cannot be atomic, so they are refused.
MULTI_FILE_FORMATS = (".mhd", ".nhdr", ".hdr", ".img")
LOCK_SUFFIX = ".mpunet-lock"


class OutputIsInputError(ValueError):
    """An output path that names one of the run's inputs; writing it would destroy the input."""


class OutputInUseError(ValueError):
    """An output that another run is writing right now (its lock file exists and is held)."""


class OutputFormatError(ValueError):
    """An output file name whose format cannot hold a 3-D label map with its geometry."""


class OutputNotWritableError(ValueError):
    """An output folder that cannot be created or written (permissions, read-only disk)."""


# ------------------------------------------------------------------------------------ output = input


def input_files(paths: Iterable[Optional[PathLike]]) -> List[Path]:
    """The files a run reads: each file given, and the files directly inside each folder given.

    Args:
        paths: input files and folders (a DICOM series folder, a folder of label maps); None is skipped.

    Returns:
        The files, in the order found.
    """
    files: List[Path] = []
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            files.extend(p for p in sorted(path.iterdir()) if p.is_file())
        else:
            files.append(path)
    return files


def _file_id(path: Path) -> Optional[Tuple[int, int]]:
    """(device, inode) of the file a path leads to (links followed), or None when there is none."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def _normalised(path: PathLike) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(os.fspath(path))))


def refuse_outputs_onto_inputs(outputs: Iterable[PathLike], inputs: Iterable[PathLike]) -> None:
    """Refuse any output that is one of the inputs, whatever the overwrite flags say.

    Two paths are the same file when both exist and `os.stat` finds the same device and inode (this
    sees `./`, `..`, symbolic and hard links), or when their resolved absolute paths are equal.

    Args:
        outputs: the files the run will write.
        inputs: the files it reads (expand folders with :func:`input_files`).

    Raises:
        OutputIsInputError: naming the output, the input and the fix.
    """
    by_id: Dict[Tuple[int, int], Path] = {}
    by_name: Dict[str, Path] = {}
    for path in inputs:
        path = Path(path)
        file_id = _file_id(path)
        if file_id is not None:
            by_id.setdefault(file_id, path)
        by_name.setdefault(_normalised(path), path)
    for output in outputs:
        output = Path(output)
        file_id = _file_id(output)
        same = by_id.get(file_id) if file_id is not None else None
        same = same or by_name.get(_normalised(output))
        if same is not None:
            link = "" if _normalised(same) == _normalised(output) else " (the same file through a link)"
            raise OutputIsInputError(
                f"the output {output} is the input {same}{link}: writing it would destroy the input, so it "
                "is refused even with --overwrite. Choose an output file or folder that is not an input."
            )


# ---------------------------------------------------------------------------------------- formats


def check_label_map_format(path: PathLike, what: str = "label map") -> Path:
    """Refuse a label map file name whose format cannot hold a 3-D image with its geometry.

    Args:
        path: the output file name.
        what: what is written, for the message ("label map", "image").

    Returns:
        The path.

    Raises:
        OutputFormatError: the extension is not one of :data:`LABEL_MAP_FORMATS`.
    """
    path = Path(path)
    extension = split_extension(path)[1]
    choices = ", ".join(LABEL_MAP_FORMATS)
    if extension.lower() in MULTI_FILE_FORMATS:
        raise OutputFormatError(
            f"cannot write {path}: {extension} stores the image in two files, which cannot be written "
            f"atomically; name the output with one of {choices}."
        )
    if extension.lower() not in LABEL_MAP_FORMATS:
        kind = f"{extension} files" if extension else "a name without a file extension"
        folder = "" if extension else " (to write into a folder, create the folder first)"
        raise OutputFormatError(
            f"cannot write {path}: {kind} cannot hold a 3-D {what} with its spacing, origin and "
            f"direction; name the output with one of {choices}{folder}."
        )
    return path


# ------------------------------------------------------------------------------------ reservations

_HELD: Dict[str, Tuple[int, int]] = {}  # lock path -> (file descriptor, nesting depth) of this process


def lock_path_for(path: PathLike) -> Path:
    """The lock file that reserves `path`: a hidden file beside it."""
    path = Path(os.path.abspath(os.fspath(path)))
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on an open file; False when another process holds it.

    The operating system drops the lock when its process ends, however it ends (kill -9 included), so
    a lock file left by a dead run is recognised as stale. Where `fcntl` is missing (Windows), an open
    lock file cannot be deleted, which :func:`_take_over` relies on instead.
    """
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _owner(lock: Path) -> str:
    try:
        text = lock.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return "another run"
    return text or "another run"


def _create(lock: Path) -> Optional[int]:
    """Create the lock file exclusively and lock it; None when it exists already."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    try:
        _try_lock(fd)
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, started {stamp}\n".encode())
    except BaseException:  # an interruption (SIGTERM) between creating and returning: leave nothing
        os.close(fd)
        with contextlib.suppress(OSError):
            lock.unlink()
        raise
    return fd


def _take_over(lock: Path) -> Optional[int]:
    """Take an existing lock file whose run has ended (see :func:`_try_lock`); None when it is live."""
    try:
        import fcntl  # noqa: F401
    except ImportError:  # Windows: a live run's open lock file cannot be removed
        try:
            lock.unlink()
        except FileNotFoundError:
            return _create(lock)
        except OSError:
            return None
        return _create(lock)
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return _create(lock)
    if not _try_lock(fd):
        os.close(fd)
        return None
    status = os.fstat(fd)
    if _file_id(lock) != (status.st_dev, status.st_ino):
        os.close(fd)  # the finished run removed it and a new one was created meanwhile: start over
        return _create(lock)
    os.ftruncate(fd, 0)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, started {stamp}\n".encode())
    return fd


@contextlib.contextmanager
def reserve_output(path: PathLike) -> Iterator[Path]:
    """Reserve an output file for this run until the block ends (success, error or interruption).

    A hidden lock file `.NAME.mpunet-lock` is created beside the output with `O_CREAT | O_EXCL`; a
    second run asking for the same output while the first holds it fails at once. Reservations are
    re-entrant within one process (the command line reserves early, `segment_file` again). Folders
    created for the lock are removed again when they end up empty.

    Args:
        path: the output file.

    Yields:
        The output path.

    Raises:
        OutputInUseError: another run holds the reservation.
        OutputNotWritableError: the output's folder cannot be created or written.
    """
    path = Path(path)
    lock = lock_path_for(path)
    key = str(lock)
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield path
        finally:
            fd, depth = _HELD[key]
            _HELD[key] = (fd, depth - 1)
        return
    created = _missing_folders(lock.parent)
    fd: Optional[int] = None
    try:  # one finally for every way out, an interruption while the lock is being taken included
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = _create(lock)
            if fd is None:
                fd = _take_over(lock)
        except OSError as error:
            raise OutputNotWritableError(
                f"cannot write the output {path}: its folder {lock.parent} cannot be written "
                f"({error.strerror or error}); choose a folder you can write to."
            ) from None
        if fd is None:
            raise OutputInUseError(
                f"the output {path} is being written by {_owner(lock)}; wait until that run has finished, "
                f"or choose another output. If no such run is going, delete {lock}."
            )
        _HELD[key] = (fd, 1)
        yield path
    finally:
        _HELD.pop(key, None)
        if fd is not None:  # ours: remove it (another run's lock is never touched)
            with contextlib.suppress(OSError):
                lock.unlink()
            os.close(fd)
        _remove_empty(created)


@contextlib.contextmanager
def reserve_outputs(paths: Iterable[PathLike]) -> Iterator[List[Path]]:
    """Reserve several outputs at once (all or none); see :func:`reserve_output`."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(reserve_output(path)) for path in paths]


def _missing_folders(folder: Path) -> List[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    current = folder
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing


def _remove_empty(folders: List[Path]) -> None:
    """Remove the folders a reservation created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return
