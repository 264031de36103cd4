"""Package attributes imported on first use (PEP 562), shared by the packages that need them.

A package lists ``{public name: submodule}`` and gets ``__getattr__``/``__dir__`` that import the
submodule only when the name is first looked up, so importing a light submodule (the registry, the
settings, volume I/O) never pulls in torch. Nothing here imports anything heavy.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Tuple

Hooks = Tuple[Callable[[str], Any], Callable[[], List[str]]]


def lazy_exports(package: str, exports: Dict[str, str]) -> Hooks:
    """``(__getattr__, __dir__)`` for ``package`` whose ``exports`` map names to submodule names.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, {"segment": "engine"})  # doctest: +SKIP
    """
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
