"""The package versions MPU-Net needs in the background Python, and how an installed version is compared.

Kept free of Slicer and torch: the Slicer process reads it to judge the probe's report
(:mod:`.dependencies`), without importing the packages themselves.
"""

from __future__ import annotations

import re
from typing import Dict, List

# the same minimum as pyproject.toml's "torch>=2.1" (Testing/test_slicer_dependencies.py checks they agree)
TORCH_REQUIREMENT = ">=2.1"
# module -> minimum version (">=X.Y" form) that the probe checks; an older one is offered for upgrade
MINIMUM_VERSIONS: Dict[str, str] = {"torch": TORCH_REQUIREMENT}


def version_satisfies(version: str, requirement: str) -> bool:
    """Tell whether an installed version meets a ``">=X.Y[.Z]"`` requirement.

    Only the leading numbers count: ``"2.1.0+cu121"`` is 2.1.0 and ``"2.2.0a0+git"`` is 2.2.0 (a
    pre-release of the required version is accepted; MPU-Net needs no feature that appeared in one).

    Args:
        version: the installed version, e.g. ``torch.__version__``.
        requirement: ``">=X.Y"`` or ``">=X.Y.Z"``.

    Returns:
        True when ``version`` is at least the required one, or when ``version`` has no leading number
        (nothing to compare: the import worked, so it is not refused).

    Raises:
        ValueError: on a requirement not of the form ``">=X.Y[.Z]"``.
    """
    wanted = re.fullmatch(r"\s*>=\s*(\d+(?:\.\d+)*)\s*", requirement)
    if wanted is None:
        raise ValueError(f"unsupported version requirement {requirement!r}: write it as '>=X.Y'")
    found = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if found is None:
        return True

    def numbers(text: str) -> List[int]:
        return [int(part) for part in text.split(".")]

    have, need = numbers(found.group(1)), numbers(wanted.group(1))
    width = max(len(have), len(need))
    return have + [0] * (width - len(have)) >= need + [0] * (width - len(need))
