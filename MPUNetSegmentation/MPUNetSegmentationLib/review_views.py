"""The review layouts and the slice views they show, in the Slicer application or headless.

The layouts are plain MRML: an XML description registered with the scene's ``vtkMRMLLayoutNode`` and
selected with ``SetViewArrangement``. In the application, the layout manager then builds the Qt views and
their slice logics. Outside it (``slicer-core``), :func:`slice_logic` builds what the application would:
Slicer's own ``vtkMRMLLayoutLogic`` (which creates the view nodes a layout names),
``vtkMRMLSliceLinkLogic`` (which keeps linked views on the same slice and zoom) and one
``vtkMRMLSliceLogic`` per view (slice node, slice composite node, reslicing), so the same review code runs
and can be tested, and views can be rendered offscreen (:mod:`.slice_rendering`).

:func:`save_views` records what a review changes in the views (layout, each slice view's volumes, linking,
orientation and field of view, the table shown) so that :meth:`SavedViews.restore` can put it all back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

#: Custom layout IDs (above Slicer's built-in ones).
SIDE_BY_SIDE_LAYOUT = 9601
OVERLAY_LAYOUT = 9602

LEFT_VIEW, RIGHT_VIEW, TABLE_VIEW = "Red", "Yellow", "TableView1"

_SLICE_VIEW = (
    '<view class="vtkMRMLSliceNode" singletontag="{name}">'
    '<property name="orientation" action="default">Axial</property>'
    '<property name="viewlabel" action="default">{label}</property>'
    '<property name="viewcolor" action="default">{color}</property>'
    "</view>"
)
_RED = _SLICE_VIEW.format(name=LEFT_VIEW, label="R", color="#F34A33")
_YELLOW = _SLICE_VIEW.format(name=RIGHT_VIEW, label="Y", color="#EDD54C")
_TABLE = (
    f'<view class="vtkMRMLTableViewNode" singletontag="{TABLE_VIEW}">'
    '<property name="viewlabel" action="default">T</property></view>'
)

#: Two linked axial views side by side over the metrics table.
SIDE_BY_SIDE_XML = (
    '<layout type="vertical" split="true">'
    '<item splitSize="700"><layout type="horizontal" split="true">'
    f"<item>{_RED}</item><item>{_YELLOW}</item>"
    "</layout></item>"
    f'<item splitSize="250">{_TABLE}</item>'
    "</layout>"
)
#: One axial view (outlines and error map) over the metrics table.
OVERLAY_XML = (
    '<layout type="vertical" split="true">'
    f'<item splitSize="700">{_RED}</item><item splitSize="250">{_TABLE}</item>'
    "</layout>"
)
LAYOUTS = {SIDE_BY_SIDE_LAYOUT: SIDE_BY_SIDE_XML, OVERLAY_LAYOUT: OVERLAY_XML}


class HeadlessViews:
    """What the application's layout manager provides, built from Slicer's MRML logics (no Qt).

    Kept alive for the life of the process (VTK logics that Python stops referencing are deleted).

    Args:
        app_logic: the ``vtkSlicerApplicationLogic`` of the headless Slicer.
        scene: its scene.
    """

    def __init__(self, app_logic: Any, scene: Any) -> None:
        import slicer

        self.app_logic = app_logic
        self.scene = scene
        # The link logic must exist before the slice nodes: it observes the nodes added after it.
        self.link_logic = slicer.vtkMRMLSliceLinkLogic()
        self.link_logic.SetMRMLApplicationLogic(app_logic)
        self.link_logic.SetMRMLScene(scene)
        self.layout_logic = slicer.vtkMRMLLayoutLogic()
        self.layout_logic.SetMRMLScene(scene)
        self.slice_logics: Dict[str, Any] = {}

    def slice_logic(self, name: str) -> Any:
        """The slice logic of view ``name`` (created with its slice and composite nodes if needed)."""
        import slicer
        import vtk

        logic = self.slice_logics.get(name)
        if logic is None:
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            existing = self.scene.GetSingletonNode(name, "vtkMRMLSliceNode")
            if existing is not None:  # made by the layout logic: use it (AddSliceNode would detach a copy)
                logic.SetSliceNode(existing)
            else:
                logic.AddSliceNode(name)
            self.slice_logics[name] = logic
            logics = vtk.vtkCollection()
            for item in self.slice_logics.values():
                logics.AddItem(item)
            self.app_logic.SetSliceLogics(logics)
        return logic


_HEADLESS_VIEWS: Optional[HeadlessViews] = None


def headless_views() -> Optional[HeadlessViews]:
    """The :class:`HeadlessViews` outside the application (created on first use), None inside it."""
    global _HEADLESS_VIEWS
    from .headless import ensure_slicer

    state = ensure_slicer()
    if state is None:
        return None
    if _HEADLESS_VIEWS is None or _HEADLESS_VIEWS.scene is not state.scene:
        _HEADLESS_VIEWS = HeadlessViews(state.app_logic, state.scene)
    return _HEADLESS_VIEWS


def layout_node() -> Any:
    """The scene's layout node (the application's, or the headless layout logic's)."""
    import slicer

    views = headless_views()
    if views is not None:
        return views.layout_logic.GetLayoutNode()
    return slicer.app.layoutManager().layoutLogic().GetLayoutNode()


def set_layout(layout_id: int) -> Any:
    """Register the review layouts (once) and switch to ``layout_id``; returns the layout node.

    Raises:
        ValueError: an unknown layout ID.
    """
    if layout_id not in LAYOUTS:
        raise ValueError(f"unknown review layout {layout_id}; known: {sorted(LAYOUTS)}")
    node = layout_node()
    for identifier, description in LAYOUTS.items():
        if not node.IsLayoutDescription(identifier):
            node.AddLayoutDescription(identifier, description)
    node.SetViewArrangement(layout_id)
    return node


def slice_logic(name: str) -> Any:
    """The ``vtkMRMLSliceLogic`` of slice view ``name`` ("Red", "Yellow", ...).

    Raises:
        RuntimeError: inside the application, when the current layout has no such view.
    """
    import slicer

    views = headless_views()
    if views is not None:
        return views.slice_logic(name)
    widget = slicer.app.layoutManager().sliceWidget(name)
    if widget is None:
        raise RuntimeError(f"the current layout has no slice view '{name}'")
    return widget.sliceLogic()


def show_table(table: Any) -> None:
    """Show a table node in the layout's table view (the application logic's table selection)."""
    import slicer

    app_logic = slicer.app.applicationLogic()
    app_logic.GetSelectionNode().SetActiveTableID(table.GetID() if table is not None else None)
    app_logic.PropagateTableSelection()


#: Slice composite node properties a review may change (directly, or through the link logic).
_COMPOSITE_PROPERTIES = (
    "BackgroundVolumeID",
    "ForegroundVolumeID",
    "LabelVolumeID",
    "ForegroundOpacity",
    "LabelOpacity",
)
_LINK_PROPERTIES = ("LinkedControl", "HotLinkedControl")


@dataclass
class SavedViews:
    """The view settings of a scene at one moment (see :func:`save_views`).

    Attributes:
        layout: the layout (view arrangement) ID.
        composites: ``(slice composite node, {property: value})`` for every slice view.
        slices: ``(slice node, orientation, SliceToRAS 16 values, field of view, XYZ origin)``.
        active_table: the selection node's active table ID.
        table_views: ``(table view node, table ID)``.
    """

    layout: int = 0
    composites: List[Tuple[Any, Dict[str, Any]]] = field(default_factory=list)
    slices: List[Tuple[Any, str, List[float], Tuple[float, ...], Tuple[float, ...]]] = field(
        default_factory=list
    )
    active_table: Optional[str] = None
    table_views: List[Tuple[Any, Optional[str]]] = field(default_factory=list)

    def restore(self) -> None:
        """Put every saved setting back (views made since are left as they are; the layout hides them)."""
        import slicer

        if self.layout:  # first: the application resizes the views it shows again, then their geometry is set
            layout_node().SetViewArrangement(self.layout)
        for composite, _ in self.composites:  # unlink first, so that restoring one view moves no other
            composite.SetLinkedControl(False)
            composite.SetHotLinkedControl(False)
        for node, _, matrix, fov, origin in self.slices:  # the orientation follows from SliceToRAS
            was_modifying = node.StartModify()
            node.GetSliceToRAS().DeepCopy(matrix)
            node.SetFieldOfView(*fov)
            node.SetXYZOrigin(*origin)
            node.UpdateMatrices()
            node.EndModify(was_modifying)
        for composite, values in self.composites:
            for name in _COMPOSITE_PROPERTIES:
                getattr(composite, f"Set{name}")(values[name])
        for composite, values in self.composites:
            for name in _LINK_PROPERTIES:
                getattr(composite, f"Set{name}")(values[name])
        for view, table_id in self.table_views:
            view.SetTableNodeID(table_id)
        selection = slicer.app.applicationLogic().GetSelectionNode()
        if selection is not None:
            selection.SetActiveTableID(self.active_table)


def save_views() -> SavedViews:
    """Record the layout and the settings of every slice view and table view of the scene."""
    import slicer

    saved = SavedViews(layout=layout_node().GetViewArrangement())
    for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode"):
        names = _COMPOSITE_PROPERTIES + _LINK_PROPERTIES
        saved.composites.append((composite, {name: getattr(composite, f"Get{name}")() for name in names}))
    for node in slicer.util.getNodesByClass("vtkMRMLSliceNode"):
        matrix = [node.GetSliceToRAS().GetElement(i, j) for i in range(4) for j in range(4)]
        saved.slices.append(
            (node, node.GetOrientation(), matrix, tuple(node.GetFieldOfView()), tuple(node.GetXYZOrigin()))
        )
    selection = slicer.app.applicationLogic().GetSelectionNode()
    saved.active_table = selection.GetActiveTableID() if selection is not None else None
    for view in slicer.util.getNodesByClass("vtkMRMLTableViewNode"):
        saved.table_views.append((view, view.GetTableNodeID()))
    return saved
