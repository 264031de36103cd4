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
    module = (MODULE_DIR / "MPUNetSegmentation.py").read_text(encoding="utf-8")
    assert "self.tools = ToolsSection(self)" in module and "self.tools.cleanup()" in module
