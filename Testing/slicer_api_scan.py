"""Find the Slicer API calls in Python sources that a given Slicer release (5.8.1) does not have.

Reads the listing that ``Utilities/list_slicer_api.py`` writes (``Testing/data/slicer_api_v5.8.1.json``) and
checks, with Python's ``ast``:

* ``slicer.util.NAME``, ``slicer.app.NAME``, ``slicer.modules.NAME``, ``slicer.vtkCLASS`` and
  ``from slicer[.MODULE] import NAME``: the name exists in that release;
* ``receiver.Method(...)`` with a CamelCase method (the VTK/MRML style): when the receiver's class is known
  (``slicer.mrmlScene``, ``slicer.vtkX()``, ``scene.AddNewNodeByClass("vtkX")``, ``slicer.modules.x.logic()``,
  and the Slicer class a listed method returns, followed through local variables), the class or one of
  its Slicer base classes must have the method in that release, or, past the Slicer classes, the VTK base
  class of the installed ``vtk``; when the receiver is unknown, a method that the installed Slicer
  (``slicer_classes``) has but no class of that release has is reported.

Argument counts are checked too, against the declared overloads that Python can call (methods made by
VTK's macros, and names that the installed VTK's own classes also have, are not checked for counts).

A use is exempt when it sits in the body of ``if slicer_version_at_least(M, m):`` with ``(M, m)`` newer than
the listed release, or in the ``else`` of ``if not slicer_version_at_least(M, m):``.
"""

from __future__ import annotations

import ast
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Set, Tuple

GUARD = "slicer_version_at_least"
API_LIST = Path(__file__).parent / "data" / "slicer_api_v5.8.1.json"
# names of the slicer package that are the application's own objects rather than listed classes
# members of Qt base classes (QApplication, QObject, QWidget) that the module may use; Qt's API is not
# Slicer's and does not change between Slicer 5.8 and 5.12 (Qt 5.15)
QT_MEMBERS = {
    "processEvents",
    "applicationName",
    "quit",
    "exit",
    "setOverrideCursor",
    "restoreOverrideCursor",
}
SLICER_OBJECTS = {
    "app",
    "mrmlScene",
    "modules",
    "util",
    "i18n",
    "parameterNodeWrapper",
    "ScriptedLoadableModule",
}


@dataclass(frozen=True)
class Finding:
    """One use of a Slicer API that the listed release lacks."""

    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


class SlicerApi:
    """The listing of one release, with lookups through base classes."""

    def __init__(self, listing: Mapping, installed_vtk: Optional[object] = None) -> None:
        self.tag = listing["tag"]
        self.version = tuple(int(part) for part in self.tag.lstrip("v").split(".")[:2])
        self.classes: Dict[str, Dict] = listing["classes"]
        self.python: Dict[str, List[str]] = listing["python"]
        self.modules: Set[str] = set(listing["modules"])
        self.all_methods: Set[str] = {m for info in self.classes.values() for m in info["methods"]}
        self.vtk = installed_vtk

    @classmethod
    def load(cls, path: Path = API_LIST, installed_vtk: Optional[object] = None) -> SlicerApi:
        """Read a listing written by ``Utilities/list_slicer_api.py``."""
        return cls(json.loads(Path(path).read_text()), installed_vtk)

    def _chain(self, class_name: str) -> Tuple[List[str], List[str]]:
        """Return (listed classes, first unlisted bases) of a class and its ancestors."""
        listed, outside, todo = [], [], [class_name]
        while todo:
            name = todo.pop(0)
            if name in listed:
                continue
            if name in self.classes:
                listed.append(name)
                todo.extend(self.classes[name]["bases"])
            else:
                outside.append(name)
        return listed, outside

    def has_member(self, class_name: str, name: str) -> bool:
        """Whether ``class_name`` (with its bases) has a method, property or constant ``name``."""
        listed, outside = self._chain(class_name)
        for listed_name in listed:
            info = self.classes[listed_name]
            if name in info["methods"] or name in info["properties"] or name in info["constants"]:
                return True
        # past Slicer's own classes (vtkObject, vtkImageData...): the installed VTK, whose long-standing
        # core API Slicer 5.8 has too; past a Qt base, the few Qt members listed in QT_MEMBERS
        for base in outside:
            if (
                base.startswith("vtk")
                and self.vtk is not None
                and hasattr(getattr(self.vtk, base, None), name)
            ):
                return True
            if base.startswith("Q") and name in QT_MEMBERS:
                return True
        return False

    def argument_counts(self, class_names: Iterable[str], method: str) -> Optional[List[Tuple[int, int]]]:
        """The (fewest, most) argument counts of ``method`` over the listed classes (and their bases).

        None when any definition's counts are unknown (macro-made methods, or a VTK base class outside
        the listing), so that only fully known methods are checked.
        """
        counts: List[Tuple[int, int]] = []
        for class_name in class_names:
            listed, outside = self._chain(class_name)
            if any(
                self.vtk is not None and hasattr(getattr(self.vtk, base, None), method) for base in outside
            ):
                return None
            for listed_name in listed:
                info = self.classes[listed_name]
                if method in info["methods"]:
                    pairs = info.get("arity", {}).get(method)
                    if not pairs:
                        return None
                    counts += [tuple(pair) for pair in pairs]
        return counts or None

    def vtk_methods(self) -> Set[str]:
        """Method names of the installed VTK's own classes (an unknown object may be one of those)."""
        return _vtk_method_names(self.vtk) if self.vtk is not None else set()

    def classes_with(self, method: str) -> List[str]:
        """The listed classes that declare ``method`` themselves."""
        return [name for name, info in self.classes.items() if method in info["methods"]]

    def returns(self, class_name: str, method: str) -> Optional[str]:
        """The Slicer class that ``class_name.method`` returns, when the listing knows it."""
        for listed_name in self._chain(class_name)[0]:
            returned = self.classes[listed_name]["returns"].get(method)
            if returned:
                return returned
        return None

    def is_leaf(self, class_name: str) -> bool:
        """Whether no listed class derives from ``class_name`` (an object declared so is exactly that)."""
        if not hasattr(self, "_bases"):
            self._bases = {base for info in self.classes.values() for base in info["bases"]}
        return class_name not in self._bases

    def module_logic_class(self, module: str) -> Optional[str]:
        """The logic class behind ``slicer.modules.<module>.logic()``."""
        for candidate in self.classes:
            if candidate.lower() in (f"vtkslicer{module}modulelogic", f"vtkslicer{module}logic"):
                return candidate
        return None


@functools.cache
def _vtk_method_names(vtk_module: object) -> FrozenSet[str]:
    names: Set[str] = set()
    for attribute in dir(vtk_module):
        cls = getattr(vtk_module, attribute, None)
        if attribute.startswith("vtk") and isinstance(cls, type):
            names.update(n for n in vars(cls) if n[:1].isupper())
    return frozenset(names)


def _dotted(node: ast.AST) -> Optional[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _guard_version(test: ast.AST) -> Optional[Tuple[int, int]]:
    if isinstance(test, ast.Call) and (_dotted(test.func) or "").split(".")[-1] == GUARD:
        values = [arg.value for arg in test.args if isinstance(arg, ast.Constant)]
        if len(values) == 2 and all(isinstance(value, int) for value in values):
            return values[0], values[1]
    return None


class _Scanner:
    def __init__(self, api: SlicerApi, path: str, newer_methods: Set[str]) -> None:
        self.api = api
        self.path = path
        self.newer_methods = newer_methods
        self.findings: List[Finding] = []
        self.parents: Dict[ast.AST, ast.AST] = {}

    def report(self, node: ast.AST, text: str) -> None:
        if not self.guarded(node):
            self.findings.append(Finding(self.path, getattr(node, "lineno", 0), text))

    def guarded(self, node: ast.AST) -> bool:
        child = node
        parent = self.parents.get(child)
        while parent is not None:
            if isinstance(parent, ast.If):
                test, negated = parent.test, False
                if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                    test, negated = test.operand, True
                version = _guard_version(test)
                branch = parent.orelse if negated else parent.body
                if version and version > self.api.version and child in branch:
                    return True
            child, parent = parent, self.parents.get(parent)
        return False

    # -- receiver types --
    def class_of(self, node: ast.AST, variables: Mapping[str, Optional[str]]) -> Optional[str]:
        dotted = _dotted(node)
        if dotted == "slicer.mrmlScene":
            return "vtkMRMLScene"
        if dotted == "slicer.app":
            return "qSlicerApplication"
        if dotted and dotted.startswith("slicer.vtk") and dotted.count(".") == 1:
            return dotted.split(".")[1]
        if isinstance(node, ast.Name):
            return variables.get(node.id)
        if isinstance(node, ast.Call):
            func = node.func
            dotted = _dotted(func) or ""
            if dotted.startswith("slicer.vtk") and dotted.count(".") == 1:
                return dotted.split(".")[1]
            if dotted.startswith("slicer.modules.") and dotted.endswith(".logic") and dotted.count(".") == 3:
                return self.api.module_logic_class(dotted.split(".")[2])
            if isinstance(func, ast.Attribute):
                receiver = self.class_of(func.value, variables)
                first = node.args[0] if node.args else None
                if func.attr in ("AddNewNodeByClass", "GetFirstNodeByClass", "CreateNodeByClass") and (
                    isinstance(first, ast.Constant) and isinstance(first.value, str)
                ):
                    return first.value
                if receiver:
                    returned = self.api.returns(receiver, func.attr)
                    # a declared vtkMRMLNode* may be any subclass: only a class nothing derives from is exact
                    return returned if returned and self.api.is_leaf(returned) else None
        return None

    def scan_function(self, body: Iterable[ast.stmt], variables: Dict[str, Optional[str]]) -> None:
        nodes = sorted(
            (n for stmt in body for n in ast.walk(stmt) if isinstance(n, (ast.Assign, ast.Call))),
            key=lambda n: (n.lineno, n.col_offset, isinstance(n, ast.Assign)),
        )
        for node in nodes:
            if isinstance(node, ast.Assign):
                inferred = self.class_of(node.value, variables)
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        known = target.id in variables and variables[target.id] != inferred
                        variables[target.id] = None if known else inferred
                continue
            func = node.func
            if not isinstance(func, ast.Attribute) or not func.attr[:1].isupper():
                continue
            receiver_name = _dotted(func.value)
            if receiver_name in ("slicer", "vtk", "qt", "ctk") or func.attr.startswith(("vtk", "q", "Q")):
                continue  # constructors: checked as slicer.vtkX references
            receiver = self.class_of(func.value, variables)
            if receiver is not None and (receiver in self.api.classes):
                if not self.api.has_member(receiver, func.attr):
                    self.report(node, f"{receiver}.{func.attr} is not in Slicer {self.api.tag}")
                else:
                    self.check_arguments(node, [receiver], f"{receiver}.{func.attr}")
            elif func.attr in self.newer_methods:
                self.report(
                    node, f"{func.attr}() is a Slicer method that no class of Slicer {self.api.tag} has"
                )
            elif func.attr in self.api.all_methods and func.attr not in self.api.vtk_methods():
                self.check_arguments(node, self.api.classes_with(func.attr), f"{func.attr}()")

    def check_arguments(self, node: ast.Call, classes: List[str], label: str) -> None:
        """Report a call whose argument count no Python-callable overload of the release accepts."""
        if any(isinstance(arg, ast.Starred) for arg in node.args) or node.keywords:
            return
        counts = self.api.argument_counts(classes, node.func.attr)
        given = len(node.args)
        if counts and not any(low <= given <= high for low, high in counts):
            accepted = sorted({n for low, high in counts for n in range(low, high + 1)})
            self.report(node, f"{label} takes {accepted} arguments in Slicer {self.api.tag}, not {given}")

    def scan_references(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "slicer":
                known = self.api.python.get(node.module)
                for alias in node.names:
                    name = alias.name
                    ok = (known is not None and name in known) or (
                        node.module == "slicer" and (name in self.api.classes or name in SLICER_OBJECTS)
                    )
                    if not ok:
                        self.report(node, f"from {node.module} import {name}: not in Slicer {self.api.tag}")
            if not isinstance(node, ast.Attribute) or isinstance(self.parents.get(node), ast.Attribute):
                continue
            parts = (_dotted(node) or "").split(".")
            if len(parts) < 2 or parts[0] != "slicer":
                continue
            head, name = parts[1], parts[2] if len(parts) > 2 else None
            if head == "util" and name and name not in self.api.python["slicer.util"]:
                self.report(node, f"slicer.util.{name} is not in Slicer {self.api.tag}")
            elif head == "modules" and name and name not in self.api.modules:
                self.report(node, f"slicer.modules.{name} is not in Slicer {self.api.tag}")
            elif head == "app" and name and not self.api.has_member("qSlicerApplication", name):
                self.report(node, f"slicer.app.{name} is not in Slicer {self.api.tag}")
            elif head.startswith("vtk") and head not in self.api.classes:
                self.report(node, f"slicer.{head} is not in Slicer {self.api.tag}")
            elif head.startswith("vtk") and name and not self.api.has_member(head, name):
                self.report(node, f"slicer.{head}.{name} is not in Slicer {self.api.tag}")

    def scan(self, source: str) -> List[Finding]:
        tree = ast.parse(source)
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.scan_references(tree)
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        self.scan_function([s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.ClassDef))], {})
        for classdef in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            self.scan_function([s for s in classdef.body if not isinstance(s, ast.FunctionDef)], {})
        for function in functions:  # nested functions are scanned with their own (empty) variables too
            self.scan_function(function.body, {})
        unique = {(f.line, f.text): f for f in self.findings}
        return [unique[key] for key in sorted(unique)]


def installed_slicer_methods(slicer_module: object) -> Set[str]:
    """CamelCase names that the Slicer classes of an installed ``slicer`` package (e.g. the wheel) add.

    Names inherited from VTK's own classes (``vtkImageData.GetPointData``...) are left out.
    """
    names: Set[str] = set()
    for class_name in dir(slicer_module):
        cls = getattr(slicer_module, class_name)
        if not class_name.startswith("vtk") or not isinstance(cls, type):
            continue
        own = {n for n in dir(cls) if n[:1].isupper()}
        for base in cls.__mro__[1:]:
            if not getattr(base, "__module__", "").startswith("slicer"):
                own -= set(dir(base))
                break
        names |= own
    return names


def scan_source(source: str, path: str, api: SlicerApi, newer_methods: Set[str]) -> List[Finding]:
    """Return the uses of Slicer API missing from ``api``'s release in one Python source.

    Args:
        source: Python source text.
        path: the name to report findings under.
        api: the listing of the oldest supported release.
        newer_methods: CamelCase Slicer method names of a newer Slicer (see :func:`installed_slicer_methods`);
            those not in the listing are reported on receivers of unknown class.

    Returns:
        The findings, sorted by line.
    """
    return _Scanner(api, path, newer_methods - api.all_methods).scan(source)
