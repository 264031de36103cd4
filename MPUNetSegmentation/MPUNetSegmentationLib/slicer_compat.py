"""Which Slicer release the module runs in, for the calls that differ between releases.

The module supports Slicer 5.8 and newer. A Slicer API that is newer than 5.8.1 may only be called behind
``if slicer_version_at_least(major, minor):`` with an else branch that works in 5.8;
``Testing/test_slicer_api_compat.py`` recognises exactly this guard (and fails on an unguarded call of a
method missing from ``Testing/data/slicer_api_v5.8.1.json``).
"""

from __future__ import annotations

import re
from typing import Tuple

OLDEST_SUPPORTED = (5, 8)


def wheel_version() -> Tuple[int, int]:
    """Return ``(major, minor)`` of the installed ``slicer-core`` wheel (plain Python, no application)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("slicer-core")
    except PackageNotFoundError as error:
        raise RuntimeError(
            "cannot tell the Slicer version: no slicer.app and no slicer-core wheel"
        ) from error
    return parse_version(text)


def parse_version(text: str) -> Tuple[int, int]:
    """Return ``(major, minor)`` of a version string such as ``"5.8.1"`` or ``"5.13.31053.0"``.

    Args:
        text: the version string.

    Returns:
        The first two numbers.

    Raises:
        ValueError: when the string does not start with two dot-separated numbers.
    """
    match = re.match(r"\s*(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(f"not a version number: {text!r}")
    return int(match.group(1)), int(match.group(2))


def slicer_version() -> Tuple[int, int]:
    """Return the running Slicer's ``(major, minor)`` version.

    In the Slicer application this is ``slicer.app.majorVersion``/``minorVersion`` (properties of
    ``qSlicerCoreApplication`` in every supported release); in plain Python with the ``slicer-core``
    wheel it is the headless stand-in's version, or else the wheel's own.

    Returns:
        ``(major, minor)``, e.g. ``(5, 8)``.
    """
    import slicer

    app = getattr(slicer, "app", None)
    major, minor = getattr(app, "majorVersion", None), getattr(app, "minorVersion", None)
    if isinstance(major, int) and isinstance(minor, int):
        return major, minor
    return wheel_version()


def slicer_version_at_least(major: int, minor: int) -> bool:
    """Return whether the running Slicer is ``major.minor`` or newer: THE guard for newer Slicer APIs.

    Args:
        major: major version, e.g. 5.
        minor: minor version, e.g. 10.

    Returns:
        True when ``slicer_version() >= (major, minor)``.
    """
    return slicer_version() >= (major, minor)
