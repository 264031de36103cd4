"""Which Python runs the model, whether it has what MPU-Net needs, and installing what is missing.

Inference runs in a background interpreter (background §6): ``PythonSlicer`` inside the 3D Slicer application,
the current interpreter elsewhere. The Slicer process itself never imports torch: everything about torch
(is it installed, which GPU does it see) is asked of that interpreter by :func:`probe_environment`, which
runs a short script there and reads one JSON line back.

Missing packages are installed only after the user agreed: :func:`ensure_dependencies` takes the
confirmation as a callback (the widget passes ``slicer.util.confirmOkCancelDisplay``), and installs torch
through the PyTorch extension's ``PyTorchUtils`` when it is present (it picks the CUDA build that fits the
driver), other packages with ``slicer.util.pip_install``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .requirements import MINIMUM_VERSIONS, TORCH_REQUIREMENT, version_satisfies

# Module to import in the background interpreter -> what to install when it is missing.
REQUIRED_MODULES: Dict[str, str] = {
    "numpy": "numpy",
    "SimpleITK": "SimpleITK",
    "torch": "torch",
    "MPUNetCore.pipeline": "",  # packaged with this module; cannot be installed separately
}
_REPORT_PREFIX = "MPUNET-ENVIRONMENT "

_PROBE_SCRIPT = r"""
import importlib, json, sys
modules = json.loads(sys.argv[1])
report = {"python": sys.version.split()[0], "executable": sys.executable, "modules": {}, "errors": {},
          "cuda_devices": [], "cuda_version": None, "mps": False}
for name in modules:
    try:
        module = importlib.import_module(name)
        top = sys.modules.get(name.split(".")[0], module)
        report["modules"][name] = str(getattr(top, "__version__", "") or "installed")
    except Exception as error:  # report every failure, whatever its kind
        report["modules"][name] = None
        report["errors"][name] = type(error).__name__ + ": " + str(error)
torch = sys.modules.get("torch")
if torch is not None:
    try:
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                report["cuda_devices"].append({"name": props.name, "memory_gb": props.total_memory / 2**30})
        report["cuda_version"] = torch.version.cuda
        mps = getattr(torch.backends, "mps", None)
        report["mps"] = bool(mps is not None and mps.is_available())
    except Exception as error:
        report["errors"]["torch.cuda"] = type(error).__name__ + ": " + str(error)
print("__PREFIX__" + json.dumps(report), flush=True)
""".replace("__PREFIX__", _REPORT_PREFIX)


def mpunetcore_root() -> Path:
    """Return the folder that holds the ``MPUNetCore`` package (what must be on the background ``sys.path``).

    In an installed extension MPUNetCore lies beside the module folder (in ``qt-scripted-modules``); in a
    source checkout it lies at the repository root, one level above ``MPUNetSegmentation/``.

    Returns:
        The parent folder of the ``MPUNetCore`` package.

    Raises:
        RuntimeError: when MPUNetCore cannot be found (a broken installation).
    """
    here = Path(__file__).resolve().parent  # .../MPUNetSegmentation/MPUNetSegmentationLib
    for candidate in (here.parent.parent, here.parent):
        if (candidate / "MPUNetCore" / "__init__.py").is_file():
            return candidate
    spec = importlib.util.find_spec("MPUNetCore")
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent.parent
    raise RuntimeError(
        "the MPUNetCore package was not found next to the MPUNetSegmentation module: reinstall the "
        "MPUNet extension (or, from source, add the repository's MPUNetSegmentation folder to Slicer's "
        "module paths without moving it out of the repository)"
    )


def ensure_mpunetcore_importable() -> None:
    """Put :func:`mpunetcore_root` on ``sys.path`` if ``import MPUNetCore`` would fail (source checkouts)."""
    if importlib.util.find_spec("MPUNetCore") is None:
        sys.path.insert(0, str(mpunetcore_root()))


def python_executable() -> str:
    """Return the interpreter that runs the model in the background.

    Inside 3D Slicer this is ``PythonSlicer`` (Slicer's Python with its packages; found on ``PATH``, which
    the application sets, or in ``<Slicer home>/bin``); elsewhere it is ``sys.executable``.

    Returns:
        Path of the interpreter.

    Raises:
        RuntimeError: inside Slicer when PythonSlicer cannot be found.
    """
    from .headless import is_real_slicer

    if not is_real_slicer():
        return sys.executable
    found = shutil.which("PythonSlicer")
    if found:
        return found
    import slicer

    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidate = Path(str(slicer.app.slicerHome)) / "bin" / name
    if candidate.is_file():
        return str(candidate)
    raise RuntimeError(f"PythonSlicer was not found on PATH nor at {candidate}: reinstall 3D Slicer")


def background_environment() -> Dict[str, str]:
    """Return the environment for background processes: this one, with MPUNetCore importable.

    ``PYTHONPATH`` gets :func:`mpunetcore_root` in front, output is unbuffered (progress arrives as it
    happens) and encoded as UTF-8 whatever the system locale. On Linux with glibc the allocator
    tunables of ``MPUNetCore.allocator`` are set (the network runs without a page fault per tensor;
    ``MPUNET_NO_ALLOCATOR_TUNING=1`` turns it off).
    """
    from MPUNetCore.allocator import allocator_environment  # torch-free

    env = allocator_environment(os.environ)
    root = str(mpunetcore_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclass
class EnvironmentReport:
    """What the background interpreter has.

    Attributes:
        python: its version, e.g. "3.9.10".
        executable: its path.
        modules: ``{module: version string, or None when the import failed}``.
        errors: ``{module: "ErrorType: message"}`` for each failed import.
        cuda_devices: ``[{"name": ..., "memory_gb": ...}]`` of the GPUs torch sees (empty without CUDA).
        cuda_version: the CUDA version torch was built with (None for CPU builds).
        mps: whether Apple's Metal backend is available.
    """

    python: str = ""
    executable: str = ""
    modules: Dict[str, Optional[str]] = field(default_factory=dict)
    errors: Dict[str, str] = field(default_factory=dict)
    cuda_devices: List[Dict[str, Any]] = field(default_factory=list)
    cuda_version: Optional[str] = None
    mps: bool = False

    @property
    def missing(self) -> List[str]:
        """Modules whose import failed, in the order they were checked."""
        return [name for name, version in self.modules.items() if version is None]

    @property
    def outdated(self) -> Dict[str, str]:
        """``{module: installed version}`` of imported modules older than :data:`MINIMUM_VERSIONS` asks."""
        return {
            name: str(self.modules[name])
            for name, requirement in MINIMUM_VERSIONS.items()
            if self.modules.get(name) is not None
            and not version_satisfies(str(self.modules[name]), requirement)
        }

    @property
    def ok(self) -> bool:
        """True when every checked module imported, in a version that is recent enough."""
        return not self.missing and not self.outdated

    def device_summary(self) -> str:
        """One line for the GUI: the GPU(s) found, or why the CPU will be used."""
        if self.modules.get("torch") is None:
            return "PyTorch is not installed yet (it is offered for installation when you click Apply)"
        if "torch" in self.outdated:
            return (
                f"PyTorch {self.outdated['torch']} is older than MPU-Net needs (torch{TORCH_REQUIREMENT}): "
                "an upgrade is offered when you click Apply"
            )
        if self.cuda_devices:
            names = ", ".join(f"{d['name']} ({d['memory_gb']:.0f} GB)" for d in self.cuda_devices)
            return f"GPU: {names}; CUDA {self.cuda_version}"
        if self.mps:
            return "GPU: Apple Metal (MPS)"
        build = "CPU-only PyTorch build" if not self.cuda_version else f"CUDA {self.cuda_version} build"
        return f"No GPU found ({build}): the CPU will be used"


def probe_command(
    python: Optional[str] = None, modules: Sequence[str] = tuple(REQUIRED_MODULES)
) -> List[str]:
    """Return the command line that reports on the background interpreter (see :func:`probe_environment`).

    Run it with :func:`background_environment` and ``cwd=mpunetcore_root()``, then pass its output to
    :func:`parse_probe_output` (the widget does this asynchronously with a ``BackgroundCommand``).
    """
    return [python or python_executable(), "-c", _PROBE_SCRIPT, json.dumps(list(modules))]


def parse_probe_output(stdout: str, stderr: str = "", returncode: Optional[int] = None) -> EnvironmentReport:
    """Read the report a :func:`probe_command` printed.

    Raises:
        RuntimeError: when there is no report (the interpreter failed to start; its stderr is in the message).
    """
    for line in stdout.splitlines():
        if line.startswith(_REPORT_PREFIX):
            return EnvironmentReport(**json.loads(line[len(_REPORT_PREFIX) :]))
    raise RuntimeError(
        f"the background Python gave no environment report (exit code {returncode}):\n{stderr.strip()}"
    )


def probe_environment(
    python: Optional[str] = None, modules: Sequence[str] = tuple(REQUIRED_MODULES), timeout: float = 300.0
) -> EnvironmentReport:
    """Ask the background interpreter which modules import and which GPUs torch sees (blocking).

    Args:
        python: the interpreter (default :func:`python_executable`).
        modules: modules to try to import there.
        timeout: seconds before giving up (importing torch the first time can be slow).

    Returns:
        The report.

    Raises:
        RuntimeError: when the interpreter does not start or prints no report (its stderr is in the message).
    """
    args = probe_command(python, modules)
    try:
        completed = subprocess.run(
            args,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=background_environment(),
            cwd=str(mpunetcore_root()),
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"could not run the background Python {args[0]}: {error}") from error
    return parse_probe_output(completed.stdout, completed.stderr, completed.returncode)


@dataclass(frozen=True)
class InstallStep:
    """One installation to make: ``how`` is "pytorchutils" or "pip"; ``requirement`` is a pip specifier.

    ``upgrade_from`` is the installed version when the step upgrades an outdated package ("" otherwise);
    the requirement alone makes pip (and light-the-torch) replace a version that does not meet it.
    """

    module: str
    how: str
    requirement: str
    upgrade_from: str = ""


def install_plan(
    missing: Sequence[str], pytorch_utils_available: bool, outdated: Optional[Dict[str, str]] = None
) -> List[InstallStep]:
    """Decide how to install the missing modules and upgrade the outdated ones.

    Args:
        missing: modules that failed to import (:attr:`EnvironmentReport.missing`).
        pytorch_utils_available: whether Slicer's PyTorch extension (``PyTorchUtils``) is installed.
        outdated: ``{module: installed version}`` to upgrade (:attr:`EnvironmentReport.outdated`).

    Returns:
        One step per installable module (torch through PyTorchUtils when available, else pip), then one
        per outdated module.

    Raises:
        RuntimeError: when MPUNetCore itself is missing (it ships with this module: reinstall the extension).
    """
    steps = []
    installable = [m for m in missing if REQUIRED_MODULES.get(m, m.split(".")[0])]
    for module in missing:
        requirement = REQUIRED_MODULES.get(module, module.split(".")[0])
        if not requirement:
            if installable:
                continue  # it fails because an installable package is missing (e.g. torch)
            raise RuntimeError(
                f"{module} does not import in the background Python; it ships with the MPUNet extension, "
                "so reinstall the extension (or check the log for the package it needs)"
            )
        if requirement == "torch":
            how = "pytorchutils" if pytorch_utils_available else "pip"
            steps.append(InstallStep(module, how, f"torch{TORCH_REQUIREMENT}"))
        else:
            steps.append(InstallStep(module, "pip", requirement))
    for module, installed in (outdated or {}).items():
        requirement = f"{REQUIRED_MODULES.get(module, module)}{MINIMUM_VERSIONS[module]}"
        how = "pytorchutils" if module == "torch" and pytorch_utils_available else "pip"
        steps.append(InstallStep(module, how, requirement, upgrade_from=installed))
    return steps


def _pytorch_utils_available() -> bool:
    return importlib.util.find_spec("PyTorchUtils") is not None


def install_in_slicer(steps: Sequence[InstallStep]) -> None:
    """Install packages into Slicer's Python (only inside the application).

    Args:
        steps: from :func:`install_plan`.

    Raises:
        RuntimeError: outside Slicer (install with pip yourself), or when PyTorchUtils declines.
    """
    from .headless import is_real_slicer

    if not is_real_slicer():
        names = " ".join(step.requirement for step in steps)
        raise RuntimeError(f"not running inside 3D Slicer: install the packages with pip install {names}")
    import slicer

    for step in steps:
        if step.how == "pytorchutils":
            import PyTorchUtils

            torch_logic = PyTorchUtils.PyTorchUtilsLogic()
            torch = torch_logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
            if torch is None:
                raise RuntimeError("PyTorch was not installed (PyTorchUtils reported no torch)")
        else:
            slicer.util.pip_install(step.requirement)


def ensure_dependencies(
    report: EnvironmentReport,
    confirm: Callable[[str], bool],
    install: Optional[Callable[[Sequence[InstallStep]], None]] = None,
    pytorch_utils_available: Optional[bool] = None,
) -> bool:
    """Offer to install what the background interpreter lacks, and install it only when confirmed.

    Args:
        report: from :func:`probe_environment`.
        confirm: asked with a message listing the packages; returns True to go ahead (the widget passes
            ``slicer.util.confirmOkCancelDisplay``). Not called when nothing is missing.
        install: performs the installation (default :func:`install_in_slicer`).
        pytorch_utils_available: override the detection of the PyTorch extension.

    Returns:
        True when nothing was missing or the installation ran; False when the user declined.

    Raises:
        RuntimeError: when a missing module cannot be installed, or the installation failed.
    """
    if report.ok:
        return True
    if pytorch_utils_available is None:
        pytorch_utils_available = _pytorch_utils_available()
    steps = install_plan(report.missing, pytorch_utils_available, report.outdated)
    routes = {"pytorchutils": "with the PyTorch extension", "pip": "with pip"}
    lines = [
        f"  {step.requirement} ({f'upgrade from {step.upgrade_from}, ' if step.upgrade_from else ''}"
        f"{routes[step.how]})"
        for step in steps
    ]
    details = "\n".join(f"  {module}: {error}" for module, error in report.errors.items())
    what = "are not installed or too old" if report.outdated else "are not installed"
    message = (
        f"MPU-Net needs Python packages that {what}:\n"
        + "\n".join(lines)
        + "\n\nInstall them now? This downloads from the internet and can take several minutes."
        + (f"\n\nImport errors:\n{details}" if details else "")
    )
    if not confirm(message):
        return False
    (install or install_in_slicer)(steps)
    return True
