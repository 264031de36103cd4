"""Seeded, bounded fuzzing of image headers and DICOM slices through ``mpunet segment`` (issue 10).

Small NIfTI, NRRD and MHA files and a copy of the real DICOM series get their bytes flipped, their
files truncated and their header fields set to odd values (zero, negative, NaN, 1e30, huge sizes,
garbage). Every damaged input goes through the real command line with a tiny real model. The runs
happen in one child process (a crash in a C++ reader would otherwise end the test session; the child
reports the case it was on), under an address-space cap and a time limit.

For every case: the run ends with exit code 0, 1 or 2 and never a traceback; a failed run prints one
error line and leaves no output and no temporary file; a successful one writes a label map of the
size SimpleITK reads for the input; the input is byte-identical afterwards; ITK's own warnings never
reach stderr. Seeds are fixed, so a failure reproduces.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import SimpleITK as sitk

from Testing.real_data import REAL_CT_DIR
from Testing.slicer_models import write_tiny_bundle

REPO = Path(__file__).resolve().parents[1]
REAL_SERIES = REAL_CT_DIR
SEED = int(os.environ.get("MPUNET_FUZZ_SEED", "20261128"))  # another seed explores other damage
CASES_PER_FORMAT = 10
DICOM_CASES = 8
ODD_VALUES = ["0", "-1", "nan", "inf", "1e30", "1e-30", "99999999", "", "abc", "3 3", "-0", "1e6"]
# NIfTI-1 header fields: (offset, struct format) of dims, datatype, bitpix, pixdim, vox_offset, qform/sform.
NIFTI_FIELDS = [(42, "h"), (44, "h"), (46, "h"), (70, "h"), (72, "h"), (80, "f"), (84, "f"), (88, "f")]
NIFTI_FIELDS += [(108, "f"), (252, "h"), (254, "h"), (280, "f"), (284, "f"), (296, "f"), (40, "h")]
NIFTI_VALUES = [0, -1, 1, 7, 32767, -32768, float("nan"), float("inf"), 1e30, 1e-30, 4096]


def _base_image() -> sitk.Image:
    rng = np.random.default_rng(0)
    array = np.full((8, 24, 24), -1000, np.int16)
    array[2:6, 4:20, 4:20] = rng.integers(0, 200, size=(4, 16, 16))
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 2.0))
    return image


def _flip(data: bytes, rng: np.random.Generator, end: int) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        out[int(rng.integers(0, max(1, min(end, len(out)))))] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _text_header_end(data: bytes) -> int:
    for marker in (b"\n\n", b"ElementDataFile = LOCAL\n"):
        at = data.find(marker)
        if at >= 0:
            return at + len(marker)
    return min(len(data), 400)


def _edit_text_field(data: bytes, rng: np.random.Generator) -> bytes:
    end = _text_header_end(data)
    lines = data[:end].split(b"\n")
    candidates = [i for i, line in enumerate(lines) if b":" in line or b"=" in line]
    i = int(rng.choice(candidates))
    sep = b":=" if b":=" in lines[i] else (b": " if b": " in lines[i] else b" = ")
    key = lines[i].split(sep.strip(), 1)[0].rstrip()
    values = [str(rng.choice(ODD_VALUES)) for _ in range(int(rng.integers(1, 4)))]
    lines[i] = key + sep + " ".join(values).encode()
    return b"\n".join(lines) + data[end:]


def _edit_nifti_field(data: bytes, rng: np.random.Generator) -> bytes:
    offset, fmt = NIFTI_FIELDS[int(rng.integers(0, len(NIFTI_FIELDS)))]
    value = NIFTI_VALUES[int(rng.integers(0, len(NIFTI_VALUES)))]
    if fmt == "h":
        value = int(np.clip(np.nan_to_num(value, nan=0, posinf=32767), -32768, 32767))
    out = bytearray(data)
    out[offset : offset + struct.calcsize(fmt)] = struct.pack("<" + fmt, value)
    return bytes(out)


def make_file_cases(folder: Path, rng: np.random.Generator) -> List[Path]:
    """Damaged copies of one small image in four formats."""
    image, cases = _base_image(), []
    for ext in (".nii", ".nii.gz", ".nrrd", ".mha"):
        clean = folder / f"clean{ext}"
        sitk.WriteImage(image, str(clean), False)
        data = clean.read_bytes()
        raw = gzip.decompress(data) if ext == ".nii.gz" else data
        header_end = 352 if ext.startswith(".nii") else _text_header_end(raw)
        clean.unlink()
        for k in range(CASES_PER_FORMAT):
            kind = ("flip", "truncate", "field")[k % 3]
            if kind == "truncate":
                damaged = _truncate(data, rng)
            else:
                edit = _flip(raw, rng, header_end) if kind == "flip" else None
                if edit is None:
                    edit = (
                        _edit_nifti_field(raw, rng) if ext.startswith(".nii") else _edit_text_field(raw, rng)
                    )
                damaged = gzip.compress(edit, mtime=0) if ext == ".nii.gz" else edit
            path = folder / f"{kind}-{k}{ext}"
            path.write_bytes(damaged)
            cases.append(path)
    return cases


def _dicom_edit(kind: str, rng: np.random.Generator) -> Callable[[Path], None]:
    def apply(series: Path) -> None:
        files = sorted(series.glob("*.dcm"))
        victim = files[int(rng.integers(0, len(files)))]
        data = victim.read_bytes()
        if kind == "flip":
            victim.write_bytes(_flip(data, rng, 2000))
        elif kind == "truncate":
            victim.write_bytes(_truncate(data, rng))
        elif kind == "position":  # a same-length edit of ImagePositionPatient's z
            match = re.search(rb"-235\.199997\\-226\.800003\\(-12[678]\.690002)", data)
            new = f"{float(rng.uniform(-200, 200)):+011.5f}"[:11].encode()
            victim.write_bytes(data[: match.start(1)] + new + data[match.end(1) :])
        elif kind == "delete":
            victim.unlink()
        else:  # duplicate
            shutil.copy(victim, series / f"copy-{victim.name}")

    return apply


def make_dicom_cases(folder: Path, rng: np.random.Generator) -> List[Path]:
    cases = []
    kinds = ("flip", "truncate", "position", "delete", "duplicate")
    for k in range(DICOM_CASES):
        series = folder / f"dicom-{k}"
        series.mkdir()
        for path in sorted(REAL_SERIES.glob("*.dcm")):
            shutil.copy(path, series / path.name)
        _dicom_edit(kinds[k % len(kinds)], rng)(series)
        cases.append(series)
    return cases


def fingerprint(path: Path) -> Dict[str, str]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


WORKER = """
import json, sys, traceback
from MPUNetCore.cli import main
model, manifest, report = sys.argv[1:4]
with open(report, "w") as out:
    for case in json.load(open(manifest)):
        out.write(json.dumps({"case": case["input"], "started": True}) + "\\n"); out.flush()
        try:
            code = main(["segment", case["input"], "-o", case["output"], "--model", model, "--progress",
                         "none", "--max-memory", "1G"])
            error = None
        except BaseException:
            code, error = None, traceback.format_exc()
        out.write(json.dumps({"case": case["input"], "code": code, "traceback": error}) + "\\n"); out.flush()
        print("=== end of case " + case["input"], file=sys.stderr, flush=True)
"""


def test_damaged_headers_and_slices_never_end_in_a_traceback_or_a_partial_file(tmp_path):
    rng = np.random.default_rng(SEED)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    cases = make_file_cases(inputs, rng)
    cases += make_dicom_cases(inputs, rng)
    model = write_tiny_bundle(tmp_path / "model")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    plan = [{"input": str(c), "output": str(outputs / f"{c.name}.labels.nrrd")} for c in cases]
    (tmp_path / "manifest.json").write_text(json.dumps(plan))
    before = {c["input"]: fingerprint(Path(c["input"])) for c in plan}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
    report = tmp_path / "report.jsonl"
    child = subprocess.run(
        [sys.executable, "-c", cap + WORKER, str(model), str(tmp_path / "manifest.json"), str(report)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    events = [json.loads(line) for line in report.read_text().splitlines()]
    finished = [e for e in events if "code" in e]
    assert child.returncode == 0 and len(finished) == len(plan), (
        f"the fuzz run stopped (exit {child.returncode}) on {events[-1]['case'] if events else '?'}:\n"
        + child.stderr[-3000:]
    )
    stderr_by_case = dict(
        zip(
            [e["case"] for e in finished], child.stderr.split("=== end of case ")[:-1] or [""] * len(finished)
        )
    )
    summary = {0: 0, 1: 0, 2: 0}
    for event, case in zip(finished, plan):
        name, err = case["input"], stderr_by_case.get(case["input"], "")
        assert event["traceback"] is None, f"{name}: escaped exception\n{event['traceback']}"
        assert event["code"] in (0, 1, 2), f"{name}: exit code {event['code']}"
        summary[event["code"]] += 1
        if os.environ.get("MPUNET_FUZZ_VERBOSE"):
            print(event["code"], Path(name).name, err.strip().splitlines()[-1:] if err.strip() else "")
        assert "Traceback" not in err and "WARNING: In" not in err, f"{name}: {err}"
        assert "No such file or directory" not in err, f"{name}: a stale errno as the reason: {err}"
        assert fingerprint(Path(name)) == before[name], f"{name} was modified"
        output = Path(case["output"])
        if event["code"] == 0:
            written = sitk.ReadImage(str(output))
            source = Path(name)
            reader = sitk.ImageSeriesReader() if source.is_dir() else None
            if reader is not None:
                uid = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(source))[0]
                reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(source), uid))
                expected = reader.Execute().GetSize()
            else:
                expected = sitk.ReadImage(str(source)).GetSize()
            assert written.GetSize() == expected, name
        else:
            assert not output.exists(), f"{name}: failed but left {output}"
            errors = [line for line in err.splitlines() if line.startswith("mpunet segment: error: ")]
            assert len(errors) == 1, f"{name}: {err}"
    leftovers = {p.name for p in outputs.iterdir()} - {Path(c["output"]).name for c in plan}
    assert not leftovers, f"temporary files left: {sorted(leftovers)}"
    assert summary[2] > len(plan) // 3, summary  # most damage must be detected, not segmented
    print(f"exit codes over {len(plan)} damaged inputs: {summary}")
