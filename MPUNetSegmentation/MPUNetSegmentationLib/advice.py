"""The command line's advice in the module's words.

The module runs ``mpunet segment`` in a background process, so its refusals arrive worded for the command
line: "pass --fill-nonfinite HU", "raise --max-memory", "a smaller --batch-size". The module has no
control for those options, so :func:`module_advice` replaces each such fix by what a user can do in
Slicer. Only the advice changes; the diagnosis (which volume, how many voxels, how much memory) stays.
"""

from __future__ import annotations

import re
from typing import Tuple

# (command-line advice, the same fix done in Slicer). Checked against the real messages by
# Testing/test_bad_input_slicer_advice.py, so a change of wording in MPUNetCore shows up there.
_REPLACEMENTS: Tuple[Tuple[re.Pattern[str], str], ...] = (
    (  # MPUNetCore.ct_checks.replace_nonfinite
        re.compile(
            r"Fix the image, or pass --fill-nonfinite HU \(e\.g\. --fill-nonfinite -1000 for air\) "
            r"to replace them\."
        ),
        "Replace them in the volume first, e.g. with -1000 HU (air) from the Python console: "
        "a = slicer.util.arrayFromVolume(node); a[~numpy.isfinite(a)] = -1000; "
        "slicer.util.arrayFromVolumeModified(node).",
    ),
    (  # MPUNetCore.memory.check_run_memory
        re.compile(r"run on a machine with more memory or raise --max-memory\."),
        "close other programs or run on a machine with more memory.",
    ),
    (  # MPUNetCore.volume_io: the header size check before reading
        re.compile(r"or raise --max-memory on a machine with more memory\."),
        "or run on a machine with more memory.",
    ),
    (  # MPUNetCore.memory.memory_error_message, GPU
        re.compile(
            r"pass a smaller --batch-size \(e\.g\. --batch-size 1\), or --device cpu to use the "
            r"computer's memory instead \(--max-memory sets the budget checked before a run\)\."
        ),
        "set Device to CPU to use the computer's memory instead, or crop the volume to the "
        "region of interest first (Crop Volume module).",
    ),
    (  # MPUNetCore.memory.memory_error_message, CPU
        re.compile(
            r"pass a smaller --batch-size \(e\.g\. --batch-size 1\), or close other programs "
            r"\(--max-memory sets the budget checked before a run\)\."
        ),
        "close other programs, or crop the volume to the region of interest first (Crop Volume module).",
    ),
)


def module_advice(text: str) -> str:
    """``text`` with each command-line fix the module cannot offer replaced by the fix in Slicer.

    Args:
        text: the background run's error or log text.

    Returns:
        The text, unchanged where it names no such option.
    """
    for pattern, replacement in _REPLACEMENTS:
        text = pattern.sub(replacement, text)
    return text
