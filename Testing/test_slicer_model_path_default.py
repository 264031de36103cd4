"""The model-file box is empty by default (it showed "." before), read from the module's sources.

Cause, from Slicer's ``parameterNodeWrapper`` (v5.8.1 to v5.12.3, ``serializers.py``/``guiConnectors.py``):
a ``pathlib.Path`` field without a default gets ``Path()``, and the only connector for a
``ctkPathLineEdit`` writes ``str(value)`` into the box, so an unset path shows as ".". The module now
stores the path as a ``str`` defaulting to "" and syncs the box by hand. Qt is not here, so the widget is
checked statically (as in ``test_slicer_module_ui.py``).
"""

from __future__ import annotations

import ast
import pathlib

from Testing.test_slicer_module_ui import _parameter_fields, _property, _tree, _ui_widgets


def _parameter_class() -> ast.ClassDef:
    for node in ast.walk(_tree()):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return node
    raise AssertionError("no @parameterNodeWrapper class")


def test_the_cause_a_default_path_prints_as_a_dot() -> None:
    assert str(pathlib.Path()) == "." and str(pathlib.Path("")) == "."


def test_model_path_is_an_empty_string_by_default() -> None:
    assert _parameter_fields()["modelPath"] == "str"
    (field,) = [
        item
        for item in _parameter_class().body
        if isinstance(item, ast.AnnAssign) and getattr(item.target, "id", "") == "modelPath"
    ]
    assert field.value is not None and ast.literal_eval(field.value) == ""


def test_path_box_is_synced_by_hand_not_bound_as_a_path() -> None:
    box = _ui_widgets()["modelPathLineEdit"]
    assert box.get("class") == "ctkPathLineEdit"
    assert _property(box, "SlicerParameterName") is None  # the Path connector would show "." again
    source = ast.unparse(_tree())
    # the box writes the parameter, and the parameter (possibly "") is written back into the box
    assert "self.ui.modelPathLineEdit.currentPathChanged.connect(self._onModelPathChanged)" in source
    assert "self.ui.modelPathLineEdit.currentPath = p.modelPath" in source
    # Apply needs an existing file when no registered model is chosen; "" is not one
    assert "os.path.isfile(p.modelPath)" in source
