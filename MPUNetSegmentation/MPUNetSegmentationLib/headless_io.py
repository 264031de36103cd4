"""The ``qSlicerCoreIOManager`` stand-in of :mod:`.headless`: load and save files with the module logics.

``slicer.util.loadNodeFromFile``/``saveNode`` call ``slicer.app.coreIOManager()``: ``fileType`` picks a
reader type from the file name, ``loadNodes`` reads with the module logics the application's readers
use (``vtkSlicerVolumesLogic.AddArchetypeVolume``, ``vtkSlicerSegmentationsModuleLogic.
LoadSegmentationFromFile``, ...), and ``saveNodes`` writes through the node's storage node, as the
application's node writer does. Not supported headless: scenes (``.mrml``/``.mrb``), DICOM databases.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List

from .slicer_compat import slicer_version_at_least

_LOG = logging.getLogger(__name__)

# Reader file types (qSlicerIO::IOFileType strings of the real application) this stand-in implements.
VOLUME_FILE = "VolumeFile"
SEGMENTATION_FILE = "SegmentationFile"
MODEL_FILE = "ModelFile"
TABLE_FILE = "TableFile"
TRANSFORM_FILE = "TransformFile"
MARKUPS_FILE = "MarkupsFile"
NO_FILE = "NoFile"

_EXTENSION_TYPES = (
    # (lower-case suffix, file type); longest suffixes first so ".seg.nrrd" wins over ".nrrd".
    (".seg.nrrd", SEGMENTATION_FILE),
    (".seg.nhdr", SEGMENTATION_FILE),
    (".seg.vtm", SEGMENTATION_FILE),
    (".mrk.json", MARKUPS_FILE),
    (".nii.gz", VOLUME_FILE),
    (".img.gz", VOLUME_FILE),
    (".mgh.gz", VOLUME_FILE),
    (".nrrd", VOLUME_FILE),
    (".nhdr", VOLUME_FILE),
    (".nii", VOLUME_FILE),
    (".hdr", VOLUME_FILE),
    (".mha", VOLUME_FILE),
    (".mhd", VOLUME_FILE),
    (".vti", VOLUME_FILE),
    (".mgz", VOLUME_FILE),
    (".mgh", VOLUME_FILE),
    (".dcm", VOLUME_FILE),
    (".ima", VOLUME_FILE),
    (".tif", VOLUME_FILE),
    (".tiff", VOLUME_FILE),
    (".png", VOLUME_FILE),
    (".jpg", VOLUME_FILE),
    (".jpeg", VOLUME_FILE),
    (".vtm", SEGMENTATION_FILE),
    (".vtk", MODEL_FILE),
    (".vtp", MODEL_FILE),
    (".stl", MODEL_FILE),
    (".obj", MODEL_FILE),
    (".ply", MODEL_FILE),
    (".tsv", TABLE_FILE),
    (".csv", TABLE_FILE),
    (".h5", TRANSFORM_FILE),
    (".tfm", TRANSFORM_FILE),
    (".json", MARKUPS_FILE),
)

_WRITER_TYPES = (
    # (node class, writer file type) checked with IsA, most specific first.
    ("vtkMRMLSegmentationNode", SEGMENTATION_FILE),
    ("vtkMRMLVolumeNode", VOLUME_FILE),
    ("vtkMRMLModelNode", MODEL_FILE),
    ("vtkMRMLTableNode", TABLE_FILE),
    ("vtkMRMLTransformNode", TRANSFORM_FILE),
    ("vtkMRMLMarkupsNode", MARKUPS_FILE),
    ("vtkMRMLTextNode", "TextFile"),
    ("vtkMRMLStorableNode", "GenericFile"),
)


class HeadlessIOManager:
    """The subset of ``qSlicerCoreIOManager`` used by ``slicer.util``, on the real module logics."""

    def __init__(self, scene: Any, logics: Dict[str, Any]) -> None:
        """Create the manager.

        Args:
            scene: the ``vtkMRMLScene`` nodes are loaded into and looked up in.
            logics: module logics by ``slicer.modules`` name ("volumes", "segmentations", ...).
        """
        self._scene = scene
        self._logics = logics

    # -- file types -------------------------------------------------------------------------------
    def fileType(self, fileName: Any) -> str:
        """Return the reader type for a file: "SegmentationFile", "VolumeFile", ... or "NoFile".

        A plain ``.nrrd`` is a segmentation when its header holds segment metadata (``Segment0_ID:=``),
        as the application's segmentation reader decides.
        """
        name = str(fileName)
        lower = name.lower()
        for suffix, file_type in _EXTENSION_TYPES:
            if lower.endswith(suffix):
                if suffix in (".nrrd", ".nhdr") and _nrrd_has_segments(name):
                    return SEGMENTATION_FILE
                return file_type
        return NO_FILE

    def fileWriterFileType(self, node: Any) -> str:
        """Return the writer type for a node, e.g. "SegmentationFile" or "VolumeFile"."""
        for class_name, file_type in _WRITER_TYPES:
            if node is not None and node.IsA(class_name):
                return file_type
        return NO_FILE

    # -- loading ----------------------------------------------------------------------------------
    def loadNodes(
        self, fileType: str, properties: Dict[str, Any], loadedNodes: Any = None, userMessages: Any = None
    ) -> bool:
        """Load ``properties["fileName"]`` (a path or a list of paths) as ``fileType``.

        Args:
            fileType: reader type, e.g. "VolumeFile" or "SegmentationFile".
            properties: reader properties as in Slicer (``fileName``, ``name``, ``labelmap``,
                ``singleFile``, ``center``, ``autoWindowLevel``, ``discardOrientation``, ``fileNames``,
                ``colorNodeID``, ``autoOpacities``).
            loadedNodes: optional ``vtkCollection`` that receives the loaded nodes.
            userMessages: optional ``vtkMRMLMessageCollection`` that receives error messages.

        Returns:
            True when every file loaded.
        """
        file_names = properties.get("fileName")
        if isinstance(file_names, (list, tuple)):
            names = [str(f) for f in file_names]
        else:
            names = [str(file_names)]
        ok = True
        for name in names:
            props = dict(properties, fileName=name)
            try:
                nodes = self._load_one(fileType, props, userMessages)
            except (OSError, ValueError, RuntimeError) as error:
                _add_message(userMessages, str(error))
                nodes = []
            if not nodes:
                ok = False
            for node in nodes:
                if loadedNodes is not None:
                    loadedNodes.AddItem(node)
        return ok

    def _load_one(self, file_type: str, props: Dict[str, Any], messages: Any) -> List[Any]:
        import slicer

        file_name = props["fileName"]
        logics = self._logics
        if os.path.isdir(file_name):
            raise ValueError(
                f"'{file_name}' is a folder: pass one file of the series "
                "(with properties {'singleFile': False} to read the whole DICOM series)"
            )
        if not os.path.exists(file_name):
            raise ValueError(f"file not found: '{file_name}'")
        name = props.get("name")
        if file_type == VOLUME_FILE:
            options = 0
            for bit, key in (
                (1, "labelmap"),
                (2, "center"),
                (4, "singleFile"),
                (8, "autoWindowLevel"),
                (16, "discardOrientation"),
            ):
                if props.get(key):
                    options |= bit
            file_list = None
            if props.get("fileNames"):
                import vtk

                file_list = vtk.vtkStringArray()
                for f in props["fileNames"]:
                    file_list.InsertNextValue(str(f))
            if not name:
                name = slicer.vtkMRMLVolumeArchetypeStorageNode().GetFileNameWithoutExtension(file_name)
            volumes = logics["volumes"]
            if slicer_version_at_least(5, 13):  # the message collection argument is new in 5.13
                node = volumes.AddArchetypeVolume(file_name, name, options, file_list, messages)
            else:
                node = volumes.AddArchetypeVolume(file_name, name, options, file_list)
            if node is not None and props.get("colorNodeID") and node.GetDisplayNode() is not None:
                node.GetDisplayNode().SetAndObserveColorNodeID(props["colorNodeID"])
            return [node] if node is not None else []
        if file_type == SEGMENTATION_FILE:
            color_node = None
            if props.get("colorNodeID"):
                color_node = self._scene.GetNodeByID(props["colorNodeID"])
            node = logics["segmentations"].LoadSegmentationFromFile(
                file_name, bool(props.get("autoOpacities", True)), name or "", color_node, messages
            )
            return [node] if node is not None else []
        if file_type == MODEL_FILE:
            coordinate_system = int(
                props.get("coordinateSystem", slicer.vtkMRMLStorageNode.CoordinateSystemLPS)
            )
            node = logics["models"].AddModel(file_name, coordinate_system, messages)
            if node is not None and name:
                node.SetName(name)
            return [node] if node is not None else []
        if file_type == TABLE_FILE:
            node = logics["tables"].AddTable(file_name, name or "")
            return [node] if node is not None else []
        if file_type == TRANSFORM_FILE:
            node = logics["transforms"].AddTransform(file_name, self._scene, messages)
            if node is not None and name:
                node.SetName(name)
            return [node] if node is not None else []
        if file_type == MARKUPS_FILE:
            node_id = logics["markups"].LoadMarkups(file_name, name or "", messages)
            node = self._scene.GetNodeByID(node_id) if node_id else None
            return [node] if node is not None else []
        raise ValueError(f"file type '{file_type}' cannot be loaded headless (supported: {_supported()})")

    # -- saving -----------------------------------------------------------------------------------
    def saveNodes(self, fileType: str, properties: Dict[str, Any], userMessages: Any = None) -> bool:
        """Write ``properties["nodeID"]`` to ``properties["fileName"]`` through the node's storage node.

        Like the application's node writer: a default storage node is added when the node has none, its
        file name is set, ``useCompression`` is honoured, then ``WriteData`` writes the file.

        Args:
            fileType: writer type from :meth:`fileWriterFileType` (scenes, "SceneFile", are not supported).
            properties: ``nodeID``, ``fileName`` and optionally ``useCompression``.
            userMessages: optional ``vtkMRMLMessageCollection`` that receives error messages.

        Returns:
            True when the file was written.
        """
        if fileType == "SceneFile":
            _add_message(userMessages, "saving whole scenes is not supported headless")
            return False
        node = self._scene.GetNodeByID(str(properties.get("nodeID", "")))
        file_name = properties.get("fileName")
        if node is None or not file_name:
            _add_message(
                userMessages, f"saveNodes needs an existing nodeID and a fileName, got {properties!r}"
            )
            return False
        if not node.IsA("vtkMRMLStorableNode"):
            _add_message(
                userMessages, f"node {node.GetID()} ({node.GetClassName()}) cannot be stored in a file"
            )
            return False
        if node.GetStorageNode() is None and not node.AddDefaultStorageNode():
            _add_message(userMessages, f"could not create a storage node for {node.GetID()}")
            return False
        storage = node.GetStorageNode()
        storage.SetFileName(str(file_name))
        if hasattr(storage, "ResetFileNameList"):
            storage.ResetFileNameList()  # a DICOM series' file list must not follow the new file name
        storage.SetWriteFileFormat(_complete_suffix(str(file_name)))
        storage.SetURI(None)
        if "useCompression" in properties:
            storage.SetUseCompression(int(properties["useCompression"]))
        ok = bool(storage.WriteData(node))
        if not ok and userMessages is not None and storage.GetUserMessages() is not None:
            userMessages.AddMessages(storage.GetUserMessages())
        return ok


def _supported() -> str:
    return ", ".join((VOLUME_FILE, SEGMENTATION_FILE, MODEL_FILE, TABLE_FILE, TRANSFORM_FILE, MARKUPS_FILE))


def _complete_suffix(file_name: str) -> str:
    lower = file_name.lower()
    for suffix, _ in _EXTENSION_TYPES:
        if lower.endswith(suffix):
            return suffix[1:]
    return os.path.splitext(lower)[1][1:]


def _nrrd_has_segments(file_name: str) -> bool:
    try:
        with open(file_name, "rb") as stream:
            header = stream.read(4096)
    except OSError:
        return False
    return b"Segment0_ID:=" in header


def _add_message(messages: Any, text: str) -> None:
    _LOG.error(text)
    if messages is not None:
        import vtk

        messages.AddMessage(vtk.vtkCommand.ErrorEvent, text)
