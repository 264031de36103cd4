"""Label map <-> segmentation node on Slicer's real MRML, checked against SimpleITK and hand counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MPUNetSegmentationLib.scene_arrays import VolumeGeometry, add_volume_node_from_array, load_volume_node
from MPUNetSegmentationLib.segmentation_nodes import (
    LIVER_SEGMENTS,
    create_segmentation_node,
    default_segment_labels,
    label_array_from_node,
    segment_terminology,
    set_segment_terminology,
)

LIVER_VOXELS = 107_098


@pytest.fixture
def ct_and_labels(slicer_scene, real_ct_dir: Path):
    """The real CT as a node, and its expert label with a hand-made 'tumour' (label 2) inside the liver."""
    ct = load_volume_node(str(real_ct_dir))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd"))).astype(np.uint8)
    tumour = np.zeros_like(labels, bool)
    tumour[1, 200:220, 200:230] = True
    labels[tumour & (labels == 1)] = 2
    return ct, labels


def _node_state(scene) -> dict:
    import slicer.util

    state = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        if node.IsA("vtkMRMLSubjectHierarchyNode"):
            continue  # the scene's hierarchy gains items for new nodes; it is not a user node
        content = None
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
            content = slicer.util.arrayFromVolume(node).copy()
        state[node.GetID()] = (node.GetMTime(), node.GetName(), content)
    return state


def test_segmentation_from_real_label(ct_and_labels) -> None:
    import slicer
    import slicer.util

    ct, labels = ct_and_labels
    assert int((labels >= 1).sum()) == LIVER_VOXELS
    before = _node_state(slicer.mrmlScene)
    node = create_segmentation_node(labels, ct, closed_surface=True)
    after = _node_state(slicer.mrmlScene)

    # existing nodes untouched, no temporary node left behind
    for node_id, (mtime, name, content) in before.items():
        assert after[node_id][:2] == (mtime, name), node_id
        if content is not None:
            np.testing.assert_array_equal(after[node_id][2], content)
    new_ids = set(after) - set(before)
    new_classes = sorted(slicer.mrmlScene.GetNodeByID(i).GetClassName() for i in new_ids)
    assert new_classes == ["vtkMRMLSegmentationDisplayNode", "vtkMRMLSegmentationNode"]

    assert node.GetName() == f"{ct.GetName()} MPU-Net"
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    expected_counts = {"Liver": int((labels == 1).sum()), "Liver tumor": int((labels == 2).sum())}
    assert expected_counts["Liver tumor"] == 600  # the hand-made tumour lies inside the liver
    for spec in LIVER_SEGMENTS:
        segment = segmentation.GetSegment(spec.segment_id)
        assert segment.GetName() == spec.name
        np.testing.assert_allclose(segment.GetColor(), spec.color)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, spec.segment_id, ct)
        assert int(mask.sum()) == expected_counts[spec.name]
        np.testing.assert_array_equal(mask > 0, labels == spec.label)
        assert segment.GetRepresentation("Closed surface").GetNumberOfPoints() > 0

    # standard terminology, decoded by Slicer's own terminology logic
    entry = slicer.vtkSlicerTerminologyEntry()
    logic = slicer.modules.terminologies.logic()
    assert logic.DeserializeTerminologyEntry(segmentation.GetSegment("liver").GetTerminology(), entry)
    assert (entry.GetCategoryObject().GetCodeValue(), entry.GetTypeObject().GetCodeValue()) == (
        "123037004",
        "10200004",
    )
    assert entry.GetTypeObject().GetCodeMeaning() == "Liver"
    assert entry.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
    assert logic.DeserializeTerminologyEntry(segmentation.GetSegment("liver_tumor").GetTerminology(), entry)
    assert entry.GetTypeObject().GetCodeValue() == "108369006"
    assert entry.GetTypeObject().GetCodeMeaning() == "Neoplasm"
    assert entry.GetRegionObject().GetCodeValue() == "10200004"

    # geometry: the segmentation's reference geometry is the CT's
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is ct
    # a second run gets a unique name and leaves the first result alone
    first_mtime = node.GetMTime()
    second = create_segmentation_node(labels, ct)
    assert second.GetName() != node.GetName() and node.GetMTime() == first_mtime


def test_seg_nrrd_reads_back_identically(ct_and_labels, tmp_path: Path) -> None:
    import slicer.util

    ct, labels = ct_and_labels
    node = create_segmentation_node(labels, ct)
    path = tmp_path / "result.seg.nrrd"
    assert slicer.util.saveNode(node, str(path))
    image = sitk.ReadImage(str(path))
    # one layer with the label values: SimpleITK sees the label map itself, at the CT's physical points
    saved = sitk.GetArrayFromImage(image)
    assert saved.ndim == 3
    index_of = VolumeGeometry.from_sitk(image)
    ct_points = [(0, 0, 0), (511, 511, 2), (215, 210, 1)]
    for i, j, k in ct_points:
        lps = np.diag([-1, -1, 1]) @ _ras_of(ct, (i, j, k))
        si, sj, sk = np.rint(np.linalg.inv(index_of.ijk_to_lps()) @ np.r_[lps, 1])[:3].astype(int)
        inside = 0 <= si < saved.shape[2] and 0 <= sj < saved.shape[1] and 0 <= sk < saved.shape[0]
        assert (saved[sk, sj, si] if inside else 0) == labels[k, j, i]
    assert int((saved == 1).sum()) == int((labels == 1).sum())
    assert int((saved == 2).sum()) == int((labels == 2).sum())
    assert image.GetMetaData("Segment0_Name") == "Liver"
    assert image.GetMetaData("Segment1_Name") == "Liver tumor"
    assert "TerminologyEntry:" + LIVER_SEGMENTS[0].terminology in image.GetMetaData("Segment0_Tags")

    again = slicer.util.loadSegmentation(str(path))
    for spec in LIVER_SEGMENTS:
        segment = again.GetSegmentation().GetSegment(spec.segment_id)
        assert (segment.GetName(), segment.GetTerminology()) == (spec.name, spec.terminology)
        np.testing.assert_allclose(segment.GetColor(), spec.color, atol=1e-5)
    np.testing.assert_array_equal(label_array_from_node(again, ct), labels)


def _ras_of(volume, ijk) -> np.ndarray:
    import slicer.util
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return (slicer.util.arrayFromVTKMatrix(matrix) @ np.r_[ijk, 1])[:3]


def test_label_array_from_label_volume_same_and_other_grid(ct_and_labels, real_ct_dir: Path) -> None:
    import slicer.util

    ct, labels = ct_and_labels
    label_volume = slicer.util.loadLabelVolume(str(real_ct_dir / "liver_seg.nrrd"))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd")))
    np.testing.assert_array_equal(label_array_from_node(label_volume, ct), reference)

    # the same labels on a 2x coarser grid (every other voxel, spacing doubled): resampled back with
    # nearest neighbour, every CT voxel gets the label of the coarse voxel containing its centre
    geometry = VolumeGeometry.from_sitk(sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd")))
    spacing = (geometry.spacing[0] * 2, geometry.spacing[1] * 2, geometry.spacing[2])
    coarse_geometry = VolumeGeometry(spacing, geometry.origin, geometry.direction)
    coarse = labels[:, ::2, ::2]
    coarse_node = add_volume_node_from_array(coarse, coarse_geometry, "coarse", labelmap=True)
    resampled = label_array_from_node(coarse_node, ct)
    expected = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)
    # voxel centres at odd indices lie exactly halfway between coarse voxels: compare the even ones
    np.testing.assert_array_equal(resampled[:, ::2, ::2], expected[:, ::2, ::2])
    assert set(np.unique(resampled).tolist()) == {0, 1, 2}


def test_label_array_from_reference_segmentation(ct_and_labels) -> None:
    import slicer
    import slicer.util

    ct, labels = ct_and_labels
    # an expert segmentation whose "Liver" includes the tumour, plus a "Tumor" segment (overlapping)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "expert")
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    tumour_id = node.GetSegmentation().AddEmptySegment("", "Tumor 1")
    liver_id = node.GetSegmentation().AddEmptySegment("", "Liver")
    slicer.util.updateSegmentBinaryLabelmapFromArray((labels == 2).astype(np.uint8), node, tumour_id, ct)
    slicer.util.updateSegmentBinaryLabelmapFromArray((labels >= 1).astype(np.uint8), node, liver_id, ct)
    guessed = default_segment_labels(["Tumor 1", "Liver", "Segment_1"])
    assert guessed == {"Tumor 1": 2, "Liver": 1, "Segment_1": 1}
    np.testing.assert_array_equal(label_array_from_node(node, ct), labels)
    only_liver = label_array_from_node(node, ct, {"Liver": 1})
    np.testing.assert_array_equal(only_liver, (labels >= 1).astype(np.uint8))


def test_bad_inputs(ct_and_labels) -> None:
    import slicer

    ct, labels = ct_and_labels
    with pytest.raises(ValueError, match="does not match volume"):
        create_segmentation_node(labels[:2], ct)
    bad = labels.copy()
    bad[0, 0, 0] = 5
    with pytest.raises(ValueError, match=r"values \[5\]"):
        create_segmentation_node(bad, ct)
    with pytest.raises(ValueError, match="reference volume"):
        create_segmentation_node(labels, None)
    with pytest.raises(ValueError, match="select a label map volume or a segmentation"):
        label_array_from_node(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode"), ct)
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0


def test_result_follows_the_reference_parent_transform(ct_and_labels) -> None:
    import slicer

    ct, labels = ct_and_labels
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    ct.SetAndObserveTransformNodeID(transform.GetID())
    node = create_segmentation_node(labels, ct)
    assert node.GetTransformNodeID() == transform.GetID()
    np.testing.assert_array_equal(label_array_from_node(node, ct), labels)


def test_terminology_is_written_where_slicer_5_8_reads_it(slicer_env) -> None:
    import slicer
    import vtk

    segment = slicer.vtkSegment()
    entry = LIVER_SEGMENTS[1].terminology
    set_segment_terminology(segment, entry)
    # the tag that Slicer 5.8.1 reads (its vtkSegment.cxx names it "TerminologyEntry"), read here with the
    # tag API that 5.8 has, and with the convenience getter of Slicer >= 5.10
    value = vtk.reference("")
    assert segment.GetTag("TerminologyEntry", value) and str(value) == entry
    assert segment.GetTerminology() == entry
    assert segment_terminology(segment) == entry
    segment.RemoveTag("TerminologyEntry")
    assert segment_terminology(segment) == ""
