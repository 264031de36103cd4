"""The module file and its .ui, checked statically (Qt, CTK and the Slicer application are not here).

The widget itself cannot be instantiated without Qt, so these tests read the sources: every ``self.ui.<name>``
the Python uses exists in the .ui; every ``SlicerParameterName`` in the .ui is a field of the
parameterNodeWrapper class, on a widget that Slicer's GUI connectors can bind to that field's type (node
combo boxes with matching node types, check boxes/checkable buttons for bool, combo boxes for enums, path
line edits for paths); every MRML widget gets the scene; the module never imports torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Set

MODULE_DIR = Path(__file__).resolve().parents[1] / "MPUNetSegmentation"
MODULE_FILE = MODULE_DIR / "MPUNetSegmentation.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MPUNetSegmentation.ui"
MRML_WIDGETS = {
    "qMRMLNodeComboBox",
    "qMRMLTableView",
    "qMRMLSegmentsTableView",
    "qMRMLSubjectHierarchyComboBox",
}


def _tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), feature_version=(3, 9))


def _ui_widgets() -> Dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def _property(widget: ET.Element, name: str):
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def _parameter_fields() -> Dict[str, str]:
    for node in ast.walk(_tree()):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {
                item.target.id: ast.unparse(item.annotation)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            }
    raise AssertionError("no @parameterNodeWrapper class in the module file")


def _enum_classes() -> Set[str]:
    return {
        node.name
        for node in ast.walk(_tree())
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "enum.Enum" for b in node.bases)
    }


def test_every_ui_name_used_in_python_exists() -> None:
    used = {
        node.attr
        for node in ast.walk(_tree())
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert len(used) > 10
    missing = used - set(_ui_widgets())
    assert not missing, f"self.ui names missing from {UI_FILE.name}: {sorted(missing)}"


def test_parameter_names_match_fields_and_widget_types() -> None:
    fields, enums = _parameter_fields(), _enum_classes()
    bound = {}
    for name, widget in _ui_widgets().items():
        prop = _property(widget, "SlicerParameterName")
        if prop is not None:
            assert prop.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property"
            bound[prop.findtext("string")] = widget
    assert len(bound) >= 7  # modelPath is synced by hand (test_slicer_model_path_default.py)
    for parameter, widget in bound.items():
        assert parameter in fields, f"SlicerParameterName '{parameter}' is not a parameter node field"
        annotation, widget_class = fields[parameter], widget.get("class")
        if "vtkMRML" in annotation:
            assert widget_class == "qMRMLNodeComboBox", parameter
            node_types = {s.text for s in _property(widget, "nodeTypes").iter("string")}
            annotated = {part.strip(" ]") for part in annotation.split("[")[-1].split(",")} - {"None"}
            assert node_types == annotated, parameter
            # a union of node types must include None, or an empty selection cannot be stored
            assert annotation.startswith("vtkMRML") or annotation.endswith(", None]"), parameter
        elif annotation == "bool":
            checkable = _property(widget, "checkable")
            assert widget_class == "QCheckBox" or (
                widget_class == "QPushButton"
                and checkable is not None
                and checkable.findtext("bool") == "true"
            ), parameter
        elif annotation in enums:
            assert widget_class == "QComboBox", parameter
        elif annotation == "pathlib.Path":
            assert widget_class == "ctkPathLineEdit", parameter
        else:
            assert (annotation, widget_class) in {("str", "QLineEdit"), ("str", "QTextEdit")}, parameter


def test_mrml_widgets_get_the_scene() -> None:
    root = ET.parse(UI_FILE).getroot()
    receivers = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    mrml = {name for name, w in _ui_widgets().items() if w.get("class") in MRML_WIDGETS}
    assert mrml and mrml <= receivers, sorted(mrml - receivers)
    assert root.find("widget").get("class") == "qMRMLWidget"


def test_module_structure_and_no_torch_in_the_slicer_process() -> None:
    tree = _tree()
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for name in (
        "MPUNetSegmentation",
        "MPUNetSegmentationWidget",
        "MPUNetSegmentationLogic",
        "MPUNetSegmentationTest",
    ):
        assert name in classes, name
    assert {ast.unparse(b) for b in classes["MPUNetSegmentationLogic"].bases} == {
        "ScriptedLoadableModuleLogic",
        "MPUNetLogic",
    }
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert "torch" not in imported
    # the helper package and the torch-free parts of MPUNetCore the module uses do not pull torch in
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import MPUNetSegmentationLib.logic, MPUNetSegmentationLib.results\n"
        "import MPUNetSegmentationLib.comparison\n"
        "import MPUNetCore.registry\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(MODULE_DIR), str(MODULE_DIR.parent)], check=True)
    for path in sorted((MODULE_DIR / "MPUNetSegmentationLib").glob("*.py")):
        ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9))  # Slicer 5.8 runs Python 3.9
