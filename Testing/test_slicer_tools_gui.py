"""The Qt sections for click-to-segment and review, checked statically (they need the Slicer application).

The widgets themselves cannot be built without Qt. Checked here: the file parses as Python 3.9, imports no
torch, the module widget creates and cleans up the sections, and every ``owner.ui.<name>`` they use exists in
the module's .ui; the logic methods they call exist on ``MPUNetLogic``.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "MPUNetSegmentation"
SECTION_FILE = MODULE_DIR / "MPUNetSegmentationGui" / "tools_section.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MPUNetSegmentation.ui"


def _tree() -> ast.Module:
    return ast.parse(SECTION_FILE.read_text(encoding="utf-8"), feature_version=(3, 9))


def test_sections_use_existing_ui_names_and_logic_methods() -> None:
    from MPUNetSegmentationLib.logic import MPUNetLogic

    tree = _tree()
    ui_names = {w.get("name") for w in ET.parse(UI_FILE).getroot().iter("widget")}
    used_ui, used_logic = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            owner = ast.unparse(node.value)
            if owner == "self.owner.ui":
                used_ui.add(node.attr)
            elif owner == "self.owner.logic":
                used_logic.add(node.attr)
    assert used_ui and used_ui <= ui_names, sorted(used_ui - ui_names)
    assert {"segmentAtPoint", "pollClicks", "clicksPending", "compare"} <= used_logic
    assert all(hasattr(MPUNetLogic, name) for name in used_logic), used_logic


def test_sections_are_wired_into_the_module_without_torch() -> None:
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(_tree())
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert "torch" not in imported and "MPUNetCore" not in imported
    module = _module_tree()
    setup = _method(module, "MPUNetSegmentationWidget", "setup")
    built = {
        (ast.unparse(n.targets[0]), ast.unparse(n.value))
        for n in ast.walk(setup)
        if isinstance(n, ast.Assign) and len(n.targets) == 1
    }
    assert ("self.tools", "ToolsSection(self)") in built
    assert "self.tools.cleanup" in _calls(_method(module, "MPUNetSegmentationWidget", "cleanup"))


def _module_tree() -> ast.Module:
    return ast.parse(
        (MODULE_DIR / "MPUNetSegmentation.py").read_text(encoding="utf-8"), feature_version=(3, 9)
    )


def _method(tree: ast.Module, class_name: str, name: str) -> ast.FunctionDef:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    raise AssertionError(f"{class_name}.{name} not found")


def _calls(function: ast.FunctionDef) -> set:
    return {ast.unparse(node.func) for node in ast.walk(function) if isinstance(node, ast.Call)}


def test_shortcuts_live_while_the_module_is_shown_and_nothing_blocks_the_gui() -> None:
    """Ctrl+Z and the click-mode key are bound on enter, unbound on exit; Apply/Cancel never wait.

    Static (no Qt here): the widget's enter/exit/cleanup call the section's install/remove; the section's
    shortcuts undo through the logic (tested headless in test_slicer_click.py); no widget method calls a
    blocking ``wait`` (the environment check, installation and runs are polled by a timer, see
    test_slicer_install.py and test_slicer_background.py).
    """
    module = _module_tree()
    section = _tree()
    assert "self.tools.installShortcuts" in _calls(_method(module, "MPUNetSegmentationWidget", "enter"))
    assert "self.tools.removeShortcuts" in _calls(_method(module, "MPUNetSegmentationWidget", "exit"))
    assert "self.removeShortcuts" in _calls(_method(section, "ToolsSection", "cleanup"))
    install = _method(section, "ToolsSection", "installShortcuts")
    assert {"qt.QShortcut", "shortcut.setKey"} <= _calls(install)
    assert "self.owner.logic.undoLastClick" in _calls(_method(section, "ToolsSection", "undoLastClick"))
    widget = next(
        n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "MPUNetSegmentationWidget"
    )
    blocking = {c for c in _calls(widget) if c.endswith(".wait") or c.endswith("waitForProbe")}
    assert not blocking, blocking
    assert "self.gate.when_ready" in _calls(_method(module, "MPUNetSegmentationWidget", "onApplyButton"))


def test_one_segment_per_click_is_a_parameter_the_clicks_use() -> None:
    fields = {
        item.target.id: (ast.unparse(item.annotation), ast.unparse(item.value) if item.value else None)
        for node in ast.walk(_module_tree())
        if isinstance(node, ast.ClassDef) and node.name == "MPUNetSegmentationParameterNode"
        for item in node.body
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
    }
    assert fields["oneSegmentPerClick"] == ("bool", "False")  # merging is the default
    placed = _method(_tree(), "ToolsSection", "_onPointPlaced")
    keywords = {
        k.arg: ast.unparse(k.value) for n in ast.walk(placed) if isinstance(n, ast.Call) for k in n.keywords
    }
    assert keywords.get("oneSegmentPerClick") == "p.oneSegmentPerClick"
