"""Hand-written DICOM bytes for tests: a DICOMDIR, the index file a DICOM export puts beside its slices."""

from __future__ import annotations

import struct


def element(group: int, number: int, vr: str, value: bytes) -> bytes:
    """One explicit-VR little-endian data element (the value padded to an even length)."""
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    tag = struct.pack("<HH", group, number) + vr.encode()
    if vr in ("OB", "SQ"):
        return tag + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + struct.pack("<H", len(value)) + value


def dicomdir(sop_class: bytes = b"1.2.840.10008.1.3.10") -> bytes:
    """An empty DICOMDIR (PS3.10 file meta + PS3.3 F.3 basic directory): "DICM" at byte 128, no image.

    ``sop_class`` is its Media Storage SOP Class UID (Media Storage Directory Storage by default).
    """
    meta = (
        element(0x0002, 0x0001, "OB", b"\0\1")
        + element(0x0002, 0x0002, "UI", sop_class)
        + element(0x0002, 0x0003, "UI", b"1.2.826.0.1.3680043.2.1125.1")
        + element(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1")
    )
    records = (
        element(0x0004, 0x1130, "CS", b"MPUNET")
        + element(0x0004, 0x1200, "UL", struct.pack("<I", 0))
        + element(0x0004, 0x1202, "UL", struct.pack("<I", 0))
        + element(0x0004, 0x1212, "US", struct.pack("<H", 0))
        + element(0x0004, 0x1220, "SQ", b"")
    )
    group_length = element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta)))
    return b"\0" * 128 + b"DICM" + group_length + meta + records
