"""The module panel's "Click to segment" and "Review with reference" sections (Qt; Slicer application only).

Both use the module's parameter node (input volume, model, device, output segmentation, reference, comparison
table) and its logic; all work happens in ``MPUNetSegmentationLib`` (``MPUNetLogic.segmentAtPoint``,
``review.start_review``), which is tested headless. This file only wires widgets to it.
"""

import ctk
import qt
import slicer
from MPUNetSegmentationLib.review import OVERLAY, SIDE_BY_SIDE, start_review
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

NEW_SEGMENT = ""
UNDO_KEYS = "Ctrl+Z"  # Cmd+Z on macOS (Qt maps Ctrl there), as in the Segment Editor
TOGGLE_CLICK_KEYS = "Ctrl+Shift+C"  # not bound by Slicer 5.8


class ToolsSection(VTKObservationMixin):
    """Adds the two sections to a ``MPUNetSegmentationWidget`` (``owner``) and handles their events."""

    def __init__(self, owner) -> None:
        VTKObservationMixin.__init__(self)
        self.owner = owner
        self.pointNode = None
        self.reviewState = None
        self.shortcuts = []
        self.timer = qt.QTimer()
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)

        click = ctk.ctkCollapsibleButton()
        click.text = _("Click to segment")
        clickForm = qt.QFormLayout(click)
        self.placeButton = qt.QPushButton(_("Place points"))
        self.placeButton.checkable = True
        self.placeButton.toolTip = _(
            "Click on a lesion (or the liver) in a slice view: the model runs on one window around the point "
            "and the region under it is added to the output segmentation. Click again to stop placing."
        )
        self.placeButton.toolTip += " (" + TOGGLE_CLICK_KEYS + ")"
        self.targetComboBox = qt.QComboBox()
        self.targetComboBox.toolTip = _(
            "Merge each find into its class's segment (all tumours into 'Liver tumor'), or into this one"
        )
        self.perClickCheckBox = qt.QCheckBox(_("One segment per click"))
        self.perClickCheckBox.toolTip = _(
            "Add each find as a new segment instead of merging finds of one class"
        )
        self.undoButton = qt.QPushButton(_("Undo last click"))
        self.undoButton.toolTip = _("Restore the segmentation as it was before the last click (Ctrl+Z)")
        self.undoButton.enabled = False
        self.clickStatusLabel = qt.QLabel(_("Place points on lesions to segment them."))
        self.clickStatusLabel.wordWrap = True
        clickForm.addRow(_("Points:"), self.placeButton)
        clickForm.addRow(_("Add to:"), self.targetComboBox)
        clickForm.addRow(self.perClickCheckBox)
        clickForm.addRow(self.undoButton)
        clickForm.addRow(self.clickStatusLabel)

        review = ctk.ctkCollapsibleButton()
        review.text = _("Review with reference")
        reviewForm = qt.QFormLayout(review)
        self.reviewModeComboBox = qt.QComboBox()
        self.reviewModeComboBox.addItem(_("Side by side (linked views)"), SIDE_BY_SIDE)
        self.reviewModeComboBox.addItem(_("Outlines and error map"), OVERLAY)
        self.reviewButton = qt.QPushButton(_("Review"))
        self.reviewButton.checkable = True
        self.reviewButton.toolTip = _(
            "Show the output segmentation and the reference over the CT (uses the reference chosen above); "
            "click again to end the review"
        )
        reviewForm.addRow(_("Mode:"), self.reviewModeComboBox)
        reviewForm.addRow(self.reviewButton)

        panel = owner.ui.inputsCollapsibleButton.parentWidget().layout()
        for position, section in enumerate((click, review)):
            panel.insertWidget(panel.count() - 1 + position, section)  # before the panel's final spacer
        self.placeButton.toggled.connect(self._onPlaceToggled)
        self.perClickCheckBox.toggled.connect(self._onPerClickToggled)
        self.undoButton.clicked.connect(self.undoLastClick)
        self.reviewButton.toggled.connect(self._onReviewToggled)
        self.reviewModeComboBox.currentIndexChanged.connect(self._onReviewModeChanged)

    def cleanup(self) -> None:
        self.timer.stop()
        self.removeShortcuts()
        self.removeObservers()
        if self.placeButton.checked:
            self.placeButton.setChecked(False)
        self._endReview()
        self.owner.logic.stopClickSegmenter()

    def installShortcuts(self) -> None:
        """Bind Ctrl+Z (undo the last click) and Ctrl+Shift+C (click mode) while the module is shown."""
        self.removeShortcuts()
        for keys, callback in ((UNDO_KEYS, self.undoLastClick), (TOGGLE_CLICK_KEYS, self.placeButton.toggle)):
            shortcut = qt.QShortcut(slicer.util.mainWindow())
            shortcut.setKey(qt.QKeySequence(keys))
            shortcut.connect("activated()", callback)
            self.shortcuts.append(shortcut)

    def removeShortcuts(self) -> None:
        """Unbind the shortcuts (the module is left: Ctrl+Z belongs to other modules again)."""
        for shortcut in self.shortcuts:
            shortcut.setEnabled(False)
            shortcut.setParent(None)  # Python holds the last reference: the shortcut is deleted
        self.shortcuts = []

    def onSceneStartClose(self) -> None:
        """The scene closes: stop placing, forget the review (its views are reset with the scene)."""
        if self.placeButton.checked:
            self.placeButton.setChecked(False)
        self.reviewState = None
        self.reviewButton.setChecked(False)
        self.undoButton.enabled = False

    # -- click to segment --
    def updateState(self) -> None:
        """Show the parameter node's "one segment per click" and whether a click can be undone."""
        p = self.owner._parameterNode
        self.undoButton.enabled = self.owner.logic.canUndoClick
        self.perClickCheckBox.checked = bool(p and p.oneSegmentPerClick)

    def refresh(self) -> None:
        """Refill the "Add to" list from the current output segmentation."""
        p = self.owner._parameterNode
        self.updateState()
        current = self.targetComboBox.currentData
        self.targetComboBox.clear()
        self.targetComboBox.addItem(_("Segment of the clicked class"), NEW_SEGMENT)
        segmentation = p.outputSegmentation if p else None
        if segmentation:
            segments = segmentation.GetSegmentation()
            for index in range(segments.GetNumberOfSegments()):
                self.targetComboBox.addItem(
                    segments.GetNthSegment(index).GetName(), segments.GetNthSegmentID(index)
                )
        found = self.targetComboBox.findData(current)
        self.targetComboBox.setCurrentIndex(max(found, 0))

    def _onPerClickToggled(self, checked: bool) -> None:
        p = self.owner._parameterNode
        if p and p.oneSegmentPerClick != checked:
            p.oneSegmentPerClick = checked

    def undoLastClick(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Undo failed."), waitCursor=True):
            step = self.owner.logic.undoLastClick()
            self.clickStatusLabel.text = _("Undone: ") + step.description if step else _("Nothing to undo.")
        self.refresh()

    def _onPlaceToggled(self, placing: bool) -> None:
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        if not placing:
            interaction.SwitchToViewTransformMode()
            return
        if self.pointNode is None or self.pointNode.GetScene() is None:
            self.pointNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLMarkupsFiducialNode", _("MPU-Net clicks")
            )
            self.pointNode.CreateDefaultDisplayNodes()
            self.addObserver(
                self.pointNode, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self._onPointPlaced
            )
        slicer.modules.markups.logic().SetActiveList(self.pointNode)
        interaction.SetPlaceModePersistence(1)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self.refresh()

    def _onPointPlaced(self, caller, event) -> None:
        p = self.owner._parameterNode
        if not p or not p.inputVolume:
            self.clickStatusLabel.text = _("Select an input volume first.")
            return
        if self.owner.logic.clicksPending and not p.outputSegmentation:
            self.clickStatusLabel.text = _("Wait for the first point to finish: it creates the segmentation.")
            caller.RemoveNthControlPoint(caller.GetNumberOfControlPoints() - 1)
            return
        position = [0.0, 0.0, 0.0]
        caller.GetNthControlPointPositionWorld(caller.GetNumberOfControlPoints() - 1, position)
        with slicer.util.tryWithErrorDisplay(_("Click to segment failed."), waitCursor=True):
            self.owner.logic.segmentAtPoint(
                p.inputVolume,
                position,
                p.outputSegmentation,
                self.targetComboBox.currentData or None,
                model=p.model or str(p.modelPath),
                device=p.device.value,
                waitForCompletion=False,
                logCallback=self.owner.ui.logTextEdit.appendPlainText,
                oneSegmentPerClick=p.oneSegmentPerClick,
            )
            self.clickStatusLabel.text = _("Segmenting around the point...")
            self.timer.start()

    def _poll(self) -> None:
        try:
            results = self.owner.logic.pollClicks()
        except Exception as error:
            self.timer.stop()
            self.clickStatusLabel.text = _("Failed: see the log.")
            slicer.util.errorDisplay(str(error).splitlines()[0], detailedText=str(error))
            return
        p = self.owner._parameterNode
        for result in results:
            self.clickStatusLabel.text = f"{result.message} ({result.seconds:.1f} s)"
            if result.found and p and p.outputSegmentation is None:
                p.outputSegmentation = result.segmentation_node
            if result.found:
                result.segmentation_node.GetDisplayNode().SetVisibility(True)
            self.refresh()
        if not self.owner.logic.clicksPending:
            self.timer.stop()

    # -- review --
    def _onReviewToggled(self, checked: bool) -> None:
        if not checked:
            self._endReview()
            return
        p = self.owner._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Review failed."), waitCursor=True):
            try:
                if not p.comparisonTable:
                    p.comparisonTable = self.owner.logic.compare(
                        p.outputSegmentation, p.reference, p.inputVolume
                    )
                    self.owner.ui.comparisonTableView.setMRMLTableNode(p.comparisonTable)
                self.reviewState = start_review(
                    p.inputVolume,
                    p.outputSegmentation,
                    p.reference,
                    self.reviewModeComboBox.currentData,
                    table=p.comparisonTable,
                )
            except Exception:
                self.reviewButton.setChecked(False)
                raise

    def _onReviewModeChanged(self, index: int) -> None:
        if self.reviewButton.checked:
            self._endReview()
            self._onReviewToggled(True)

    def _endReview(self) -> None:
        if self.reviewState is not None:
            state, self.reviewState = self.reviewState, None
            state.end()
