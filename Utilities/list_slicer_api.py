"""List the Slicer API of one Slicer release, from its git tag, for the API-compatibility test.

Reads the headers of Slicer's VTK and Qt classes (``vtk*.h``, ``q*.h`` under ``Libs/``, ``Base/`` and
``Modules/``) and the ``slicer`` Python package at a tag of a Slicer git repository, and writes a JSON file:

* ``classes``: for each class, its base classes, its public methods (declarations and the methods that
  VTK's ``vtkGet*Macro``/``vtkSet*Macro``/``vtkBooleanMacro``/``vtkTypeMacro`` and MRML's node macros
  expand to), Qt properties, enum constants, and the Slicer class each method returns where it returns a
  pointer to one (so that a scanner can follow ``node.GetSegmentation().GetSegment(id)``), and the
  argument counts of the declared overloads that Python can call;
* ``python``: the top-level names of each ``slicer.*`` Python module (``slicer.util`` functions, ...);
* ``modules``: the names under ``slicer.modules`` (the loadable, scripted and CLI module folders, lower case).

Usage (``Testing/test_slicer_api_compat.py`` checks the module's calls against the committed output)::

    python3 Utilities/list_slicer_api.py --git-dir PATH/TO/Slicer/.git [--tag v5.8.1] [--output FILE]

The default output is ``Testing/data/slicer_api_<tag>.json``. The parser reads declarations, not C++
semantics: methods inside ``#ifndef __VTK_WRAP__`` blocks are listed too (a few names that Python cannot
call), which makes the list slightly permissive, never strict.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

HEADER = re.compile(r"^(Libs|Base|Modules)/.*/(vtk|q)[A-Za-z0-9_]+\.h$")
# expansions of VTK's and MRML's declaration macros: macro -> name patterns ("{}" is the first argument)
MACROS = {
    "vtkBooleanMacro": ("{}On", "{}Off"),
    "vtkSetClampMacro": ("Set{}", "Get{}MinValue", "Get{}MaxValue"),
    "vtkTypeMacro": ("GetClassName", "IsA", "IsTypeOf", "SafeDownCast", "NewInstance"),
    "vtkMRMLNodeNewMacro": ("CreateNodeInstance",),
    "vtkMRMLCopyContentMacro": ("CopyContent", "HasCopyContent"),
    "vtkMRMLCopyContentDefaultMacro": ("CopyContent", "HasCopyContent"),
}
GET_SET_MACRO = re.compile(r"^vtk(Get|Set)\w*Macro$")
ACCESS = re.compile(r"^(public|protected|private)\s*(Q_SLOTS|slots)?\s*:")
CLASS_HEAD = re.compile(
    r"\bclass\s+(?:\w+_EXPORT\s+|VTK_[A-Z_]+\s+)*([A-Za-z_]\w*)\s*(?::\s*([^{;]*))?\{", re.S
)
# parameter types that VTK's Python wrapping cannot pass: an overload using one is not callable from Python
NOT_WRAPPED = re.compile(
    r"std::(list|map|set|deque|pair|function|unique_ptr|shared_ptr)|\*\s*\*|\.\.\.|\bQ[A-Z]\w*<"
)
METHOD_NAME = re.compile(r"(~?[A-Za-z_]\w*)\s*\($")
SLICER_CLASS = re.compile(
    r"^(vtk|q)(MRML|Slicer|Segment|OrientedImage|ITK|Teem|Topological|Calculate|Closed|Binary|Fractional|Planar)"
)


def _git(git_dir: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True, errors="replace"
    ).stdout


def _strip(text: str) -> str:
    """Remove comments, string literals' contents and preprocessor lines, keeping line structure."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)
    lines = []
    continued = False
    for line in text.split("\n"):
        is_directive = continued or line.lstrip().startswith("#")
        continued = is_directive and line.rstrip().endswith("\\")
        lines.append("" if is_directive else line)
    return "\n".join(lines)


def _matching_brace(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return len(text) - 1


def _statements(body: str) -> Iterable[Tuple[str, str]]:
    """Yield (access, statement) for the class body's top-level statements; nested blocks are skipped."""
    default = "private"
    access = default
    current = ""
    index = 0
    while index < len(body):
        char = body[index]
        if char == "{":
            end = _matching_brace(body, index)
            block = body[index : end + 1]
            current += "{" + (block[1:-1] if current.lstrip().startswith("enum") else "") + "}"
            index = end + 1
            if not current.lstrip().startswith(("enum", "struct", "class", "union", "typedef")):
                yield access, current  # a method with an inline body
                current = ""
            continue
        if char == ";":
            yield access, current
            current = ""
        elif char == ":" and ACCESS.match(current.strip() + ":") and not current.strip().endswith(":"):
            access = current.strip().split()[0]
            current = ""
        else:
            current += char
            # a macro call such as vtkTypeMacro(...) has no semicolon in some headers: end it at ")"
            stripped = current.strip()
            if char == ")" and re.match(r"^vtk\w*Macro\s*\(", stripped):
                if stripped.count("(") == stripped.count(")"):
                    yield access, current
                    current = ""
        index += 1


def _parse_statement(statement: str, class_name: str, info: Dict) -> None:
    text = " ".join(statement.split())
    if not text:
        return
    macro = re.match(r"^(vtk\w*Macro)\s*\((.*)\)$", text)
    if macro:
        name, args = macro.group(1), macro.group(2)
        first = args.split(",")[0].strip()
        if name in MACROS:
            expanded = {pattern.format(first) for pattern in MACROS[name]}
        elif GET_SET_MACRO.match(name):
            expanded = {("Get" if name.startswith("vtkGet") else "Set") + first}
        else:
            expanded = set()
        info["methods"].update(expanded)
        info["macro_names"].update(expanded)  # their argument counts vary (vector forms): not listed
        if GET_SET_MACRO.match(name):
            object_type = re.search(r",\s*(vtk\w+)\s*\)?$", args)
            if name.startswith("vtkGetObject") and object_type and SLICER_CLASS.match(object_type.group(1)):
                info["returns"]["Get" + first] = object_type.group(1)
        return
    if text.startswith("enum"):
        inner = text[text.find("{") + 1 : text.rfind("}")]
        for item in inner.split(","):
            constant = item.split("=")[0].strip()
            if re.match(r"^[A-Za-z_]\w*$", constant):
                info["constants"].add(constant)
        return
    if text.startswith(("friend", "typedef", "using", "template", "class", "struct", "static_assert")):
        return
    head = text.split("{")[0]
    if "(" not in head or "operator" in head:
        return
    depth, cut = 0, None
    for position, char in enumerate(head):  # the first "(" at nesting level 0 opens the parameter list
        if char == "(" and depth == 0:
            cut = position
            break
        depth += char == "<"
        depth -= char == ">"
    if cut is None:
        return
    name_match = METHOD_NAME.search(head[: cut + 1])
    if name_match is None:
        return
    name = name_match.group(1)
    if name.startswith("~") or name == class_name or name.isupper():
        return
    info["methods"].add(name)
    arity = _arity(head[cut + 1 :], info["opaque"])
    if arity is not None:
        info["arity"].setdefault(name, set()).add(arity)
    returned = re.search(r"\b(vtk\w+|q\w+)\s*\*\s*$", head[: name_match.start()])
    if returned and SLICER_CLASS.match(returned.group(1)):
        info["returns"][name] = returned.group(1)


def _arity(parameters: str, opaque: Iterable[str]) -> Optional[Tuple[int, int]]:
    """(fewest, most) arguments of a declaration's parameter list, or None when Python cannot call it."""
    depth, end = 1, None
    for position, char in enumerate(parameters):
        depth += char == "("
        depth -= char == ")"
        if depth == 0:
            end = position
            break
    text = parameters[:end].strip() if end is not None else ""
    if end is None or NOT_WRAPPED.search(text) or any(re.search(rf"\b{t}\b", text) for t in opaque):
        return None
    if text in ("", "void"):
        return 0, 0
    parts, depth, current = [], 0, ""
    for char in text:  # split at the commas outside <...> and (...)
        depth += char in "<("
        depth -= char in ">)"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    required = sum("=" not in part for part in parts)
    return required, len(parts)


def parse_header(text: str) -> Dict[str, Dict]:
    """Return ``{class: {"bases", "methods", "properties", "constants", "returns"}}`` for a header's classes.

    Args:
        text: the header's source.

    Returns:
        The public API of each class defined in the header (forward declarations are skipped).
    """
    text = _strip(text)
    classes: Dict[str, Dict] = {}
    for match in CLASS_HEAD.finditer(text):
        name = match.group(1)
        start = match.end() - 1
        body = text[start + 1 : _matching_brace(text, start)]
        bases = []
        for base in (match.group(2) or "").split(","):
            words = base.replace("virtual", "").split()
            if len(words) >= 2 and words[0] == "public":
                bases.append(re.sub(r"<.*", "", words[1]))
        info = {"bases": bases, "methods": set(), "properties": set(), "constants": set(), "returns": {}}
        info.update(arity={}, macro_names=set())
        # class-local type names that Python cannot pass: containers and function pointers
        info["opaque"] = {
            typedef.group(2)
            for typedef in re.finditer(r"\btypedef\s+([^;]*?)\s*\b(\w+)\s*;", body)
            if NOT_WRAPPED.search(typedef.group(1)) or "std::vector<vtk" in typedef.group(1)
        } | set(re.findall(r"\btypedef[^;]*\(\s*\*\s*(\w+)\s*\)", body))
        # Qt properties are public whichever section declares them; then drop Qt's declaration macros
        for declaration in re.findall(r"\bQ_PROPERTY\s*\(([^()]*)\)", body):
            words = declaration.split()
            if "READ" in words:
                info["properties"].add(words[words.index("READ") - 1].lstrip("*&"))
        body = re.sub(r"\b(Q_(?!INVOKABLE|SLOTS|SIGNALS)[A-Z_]+|QVTK_OBJECT)\b(\s*\([^()]*\))?", " ", body)
        for access, statement in _statements(body):
            if access == "public" or "Q_INVOKABLE" in statement:
                _parse_statement(statement.replace("Q_INVOKABLE", ""), name, info)
        classes[name] = info
    return classes


def python_names(source: str, siblings: Optional[Dict[str, str]] = None) -> List[str]:
    """Return the public top-level functions, classes and assigned names of a Python module's source.

    Args:
        source: the module's source.
        siblings: ``{module name: source}`` of the modules in the same package, to follow
            ``from .module import *``.

    Returns:
        The sorted names.
    """
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and siblings and node.module in siblings:
            if any(alias.name == "*" for alias in node.names):
                names.update(python_names(siblings[node.module]))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    return sorted(name for name in names if not name.startswith("_"))


def list_api(git_dir: str, tag: str) -> Dict:
    """Return the API listing of Slicer at ``tag`` (see the module docstring for its layout).

    Args:
        git_dir: a Slicer git directory (a clone's ``.git`` or a bare repository).
        tag: the tag or commit, e.g. ``"v5.8.1"``.

    Returns:
        The JSON-serialisable listing.
    """
    files = _git(git_dir, "ls-tree", "-r", "--name-only", tag).splitlines()
    classes: Dict[str, Dict] = {}
    for path in files:
        if HEADER.match(path) and "/Testing/" not in path and not path.endswith("_p.h"):
            for name, info in parse_header(_git(git_dir, "show", f"{tag}:{path}")).items():
                classes.setdefault(name, info)
    sources: Dict[str, str] = {}
    package = "Base/Python/slicer/"
    for path in files:
        if path.startswith(package) and path.endswith(".py") and "/tests/" not in path:
            sources[path[len(package) : -3]] = _git(git_dir, "show", f"{tag}:{path}")
    python: Dict[str, List[str]] = {}
    for relative, source in sources.items():
        folder = relative.rsplit("/", 1)[0] if "/" in relative else ""
        siblings = {
            other.rsplit("/", 1)[-1]: text
            for other, text in sources.items()
            if (other.rsplit("/", 1)[0] if "/" in other else "") == folder
        }
        module = "slicer." + relative.replace("/", ".")
        module = module[: -len(".__init__")] if module.endswith(".__init__") else module
        python[module] = python_names(source, siblings)
    modules = set()
    for path in files:
        parts = path.split("/")
        if len(parts) > 3 and parts[0] == "Modules" and parts[1] in ("Loadable", "Scripted", "CLI"):
            modules.add(parts[2].lower())
    return {
        "tag": tag,
        "generated_by": "Utilities/list_slicer_api.py",
        "classes": {
            name: {
                "bases": info["bases"],
                "methods": sorted(info["methods"]),
                "properties": sorted(info["properties"]),
                "constants": sorted(info["constants"]),
                "returns": dict(sorted(info["returns"].items())),
                # argument counts [fewest, most] of each Python-callable overload (declared methods only)
                "arity": {
                    method: sorted(list(pair) for pair in pairs)
                    for method, pairs in sorted(info["arity"].items())
                    if method not in info["macro_names"] and name.startswith("vtk")
                },
            }
            for name, info in sorted(classes.items())
        },
        "python": dict(sorted(python.items())),
        "modules": sorted(modules),
    }


def main(argv: Optional[List[str]] = None) -> int:
    """Write the listing; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--git-dir", required=True, help="Slicer git directory (e.g. Slicer/.git)")
    parser.add_argument("--tag", default="v5.8.1", help="tag to read (default v5.8.1)")
    parser.add_argument("--output", help="JSON file (default Testing/data/slicer_api_<tag>.json)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the committed listing differs"
    )
    args = parser.parse_args(argv)
    output = Path(
        args.output or Path(__file__).resolve().parents[1] / f"Testing/data/slicer_api_{args.tag}.json"
    )
    try:
        listing = list_api(args.git_dir, args.tag)
    except subprocess.CalledProcessError as error:
        print(f"error: git could not read tag '{args.tag}' from '{args.git_dir}': {error.stderr.strip()}")
        return 1
    if args.check:
        # the committed listing must be what this tag gives today (the parser or the file drifted)
        same = output.exists() and json.loads(output.read_text()) == listing
        print(f"{output}: {'up to date' if same else 'DIFFERS from the tag: regenerate it'}")
        return 0 if same else 1
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(".tmp")
    # one class per line: reviewable diffs when the listing is regenerated
    lines = ["{"]
    for key in ("tag", "generated_by"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(listing[key])},")
    for key in ("classes", "python"):
        items = [f"    {json.dumps(name)}: {json.dumps(value)}" for name, value in listing[key].items()]
        lines.append(f"  {json.dumps(key)}: {{\n" + ",\n".join(items) + "\n  },")
    lines.append(f'  "modules": {json.dumps(listing["modules"])}')
    lines.append("}")
    temporary.write_text("\n".join(lines) + "\n")
    json.loads(temporary.read_text())
    temporary.replace(output)
    print(f"{output}: {len(listing['classes'])} classes, {len(listing['python'])} Python modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
