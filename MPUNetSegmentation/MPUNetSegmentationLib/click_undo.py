"""Undo of click-to-segment: each click can be taken back, restoring the segmentation exactly as it was.

The segment states are kept by Slicer's own ``vtkSegmentationHistory`` (the class behind the Segment
Editor's undo): one history per segmentation node a click changed, its state saved right before each
change. Undoing the last click restores that state: a segment the click created is removed, a segment it
merged into gets its previous voxels back, and every other segment is as it was. A click that created the
segmentation node itself is undone by removing that node.

Edits made with other tools after a click are part of the state the undo replaces (as in the Segment
Editor, undo goes back to the state before the click).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

#: clicks that can be undone (each kept state may hold a copy of a labelmap layer).
MAX_UNDO = 10


@dataclass
class UndoStep:
    """One click that changed a segmentation.

    Attributes:
        node: the segmentation node it changed.
        created_node: True when the click created the node (undo removes it).
        description: what the click did, for the user.
    """

    node: Any
    created_node: bool
    description: str


class ClickUndoStack:
    """The clicks that can be undone, newest last (see the module docstring).

    Args:
        limit: how many clicks are kept.
    """

    def __init__(self, limit: int = MAX_UNDO) -> None:
        self.limit = limit
        self.steps: List[UndoStep] = []
        self._histories: List[Any] = []  # vtkSegmentationHistory, one per changed node

    def before_change(self, node: Any) -> None:
        """Save the state of ``node`` (a segmentation node about to be changed by a click; None: none yet)."""
        if node is not None:
            self._history(node).SaveState()

    def record(self, node: Any, created_node: bool, description: str) -> None:
        """Remember a click that changed ``node`` (after :meth:`before_change` and the change)."""
        self.steps.append(UndoStep(node, created_node, description))
        if created_node:  # later clicks on this node are undone through its history
            self._history(node)
        del self.steps[: max(0, len(self.steps) - self.limit)]

    @property
    def available(self) -> bool:
        """True when a click can be undone (its segmentation is still in a scene)."""
        self._drop_stale()
        return bool(self.steps)

    def undo(self) -> Optional[UndoStep]:
        """Undo the last click; returns it, or None when there is nothing to undo.

        Raises:
            RuntimeError: Slicer could not restore the saved state (the undo list is then cleared).
        """
        self._drop_stale()
        if not self.steps:
            return None
        step = self.steps.pop()
        if step.created_node:
            from .segmentation_nodes import remove_node

            self._forget(step.node)
            remove_node(step.node)
            return step
        history = self._history(step.node)
        if not history.RestorePreviousState():
            self.clear()
            raise RuntimeError(
                f"the state of '{step.node.GetName()}' before the click could not be restored "
                f"(Slicer keeps {history.GetMaximumNumberOfStates()} states)"
            )
        return step

    def clear(self) -> None:
        """Forget every click (e.g. when the output segmentation is replaced by a full run)."""
        self.steps = []
        for history in self._histories:
            history.SetSegmentation(None)
        self._histories = []

    def _history(self, node: Any) -> Any:
        import slicer

        segmentation = node.GetSegmentation()
        for history in self._histories:
            if history.GetSegmentation() is segmentation:
                return history
        history = slicer.vtkSegmentationHistory()
        history.SetMaximumNumberOfStates(self.limit + 1)  # the states before each click, and the current
        history.SetSegmentation(segmentation)
        self._histories.append(history)
        return history

    def _forget(self, node: Any) -> None:
        segmentation = node.GetSegmentation()
        for history in [h for h in self._histories if h.GetSegmentation() is segmentation]:
            history.SetSegmentation(None)
            self._histories.remove(history)
        self.steps = [step for step in self.steps if step.node is not node]

    def _drop_stale(self) -> None:
        for step in [s for s in self.steps if s.node.GetScene() is None]:  # its scene was closed
            self._forget(step.node)
