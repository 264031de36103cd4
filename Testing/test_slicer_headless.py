"""The headless bootstrap: unchanged ``slicer.util`` code on Slicer's real MRML, checked against SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

DICOM_FILE = "ct-3slice_01.dcm"
LIVER_VOXELS = 107_098


def _series(real_ct_dir: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(real_ct_dir)))
    return reader.Execute()


def _ijk_to_ras(node) -> np.ndarray:
    import slicer.util
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def test_bootstrap_is_idempotent_and_complete(slicer_env) -> None:
    import slicer
    from MPUNetSegmentationLib.headless import ensure_slicer, is_real_slicer

    assert ensure_slicer() is slicer_env
    assert not is_real_slicer()
    assert slicer.mrmlScene is slicer_env.scene
    assert slicer.app.coreIOManager() is slicer_env.io_manager
    assert slicer.modules.volumes.logic().IsA("vtkSlicerVolumesLogic")
    assert slicer.modules.segmentations.logic().IsA("vtkSlicerSegmentationsModuleLogic")
    assert slicer.modules.colors.logic().IsA("vtkSlicerColorLogic")
    # logics are reachable the C++ way too (vtkSlicerApplicationLogic::GetModuleLogic)
    assert slicer_env.app_logic.GetModuleLogic("Segmentations") is slicer.modules.segmentations.logic()
    assert slicer.modules.segmentations.logic().GetMRMLScene() is slicer.mrmlScene


def test_load_dicom_series_matches_simpleitk(slicer_scene, real_ct_dir: Path) -> None:
    import slicer.util

    node = slicer.util.loadVolume(str(real_ct_dir / DICOM_FILE), {"singleFile": False})
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetName() == "ct-3slice_01"
    assert node.GetImageData().GetDimensions() == (512, 512, 3)
    image = _series(real_ct_dir)
    # identity direction: LPS origin (-235.2, -226.8, -128.69) is RAS (235.2, 226.8, -128.69)
    expected = (
        np.diag([-1.0, -1.0, 1.0, 1.0])
        @ np.r_[np.c_[np.diag(image.GetSpacing()), image.GetOrigin()], [[0, 0, 0, 1]]]
    )
    np.testing.assert_allclose(_ijk_to_ras(node), expected, atol=1e-5)
    np.testing.assert_allclose(node.GetOrigin(), (235.2, 226.8, -128.69), atol=1e-3)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayFromImage(image))
    single = slicer.util.loadVolume(str(real_ct_dir / DICOM_FILE), {"singleFile": True, "name": "one"})
    assert single.GetImageData().GetDimensions() == (512, 512, 1) and single.GetName() == "one"


def test_folder_is_rejected_like_slicer(slicer_scene, real_ct_dir: Path) -> None:
    import slicer.util

    with pytest.raises(RuntimeError, match="is a folder"):
        slicer.util.loadVolume(str(real_ct_dir))
    with pytest.raises(RuntimeError, match="not found"):
        slicer.util.loadVolume(str(real_ct_dir / "missing.nrrd"))


def test_label_volume_and_segmentation_load(slicer_scene, real_ct_dir: Path) -> None:
    import slicer.util

    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd")))
    assert int((reference == 1).sum()) == LIVER_VOXELS
    label = slicer.util.loadLabelVolume(str(real_ct_dir / "liver_seg.nrrd"))
    assert label.IsA("vtkMRMLLabelMapVolumeNode")
    assert label.GetDisplayNode().GetColorNode() is not None
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(label), reference)

    ct = slicer.util.loadVolume(str(real_ct_dir / DICOM_FILE), {"singleFile": False})
    segmentation = slicer.util.loadSegmentation(str(real_ct_dir / "liver_seg.nrrd"))
    assert segmentation.IsA("vtkMRMLSegmentationNode")
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, ct)
    np.testing.assert_array_equal(mask, reference)


def test_closed_surface_conversion(slicer_scene, real_ct_dir: Path) -> None:
    import slicer.util

    segmentation = slicer.util.loadSegmentation(str(real_ct_dir / "liver_seg.nrrd"))
    assert segmentation.CreateClosedSurfaceRepresentation()
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    surface = segmentation.GetClosedSurfaceInternalRepresentation(segment_id)
    assert surface is not None and surface.GetNumberOfPoints() > 1000
    # the surface hugs the label: its RAS bounds match the labelled voxels' bounds within a voxel
    image = sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd"))
    k, j, i = np.nonzero(sitk.GetArrayFromImage(image))
    corners = [
        image.TransformIndexToPhysicalPoint((int(a), int(b), int(c)))
        for a, b, c in ((i.min(), j.min(), k.min()), (i.max(), j.max(), k.max()))
    ]
    lps_low, lps_high = np.min(corners, axis=0), np.max(corners, axis=0)
    ras_low = np.array([-lps_high[0], -lps_high[1], lps_low[2]])
    ras_high = np.array([-lps_low[0], -lps_low[1], lps_high[2]])
    bounds = np.array(surface.GetBounds()).reshape(3, 2)
    np.testing.assert_allclose(bounds[:, 0], ras_low, atol=1.01)
    np.testing.assert_allclose(bounds[:, 1], ras_high, atol=1.01)


def test_save_segmentation_and_label_map(slicer_scene, real_ct_dir: Path, tmp_path: Path) -> None:
    import slicer.util

    source = sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd"))
    ct = slicer.util.loadVolume(str(real_ct_dir / DICOM_FILE), {"singleFile": False})
    segmentation = slicer.util.loadSegmentation(str(real_ct_dir / "liver_seg.nrrd"))
    assert slicer.util.saveNode(segmentation, str(tmp_path / "liver.seg.nrrd"))
    saved = sitk.ReadImage(str(tmp_path / "liver.seg.nrrd"))
    assert "Segment0_ID" in saved.GetMetaDataKeys()
    # same voxels at the same physical points (the file may be cropped to the segment's extent)
    saved_array = sitk.GetArrayFromImage(saved)
    assert int((saved_array == 1).sum()) == LIVER_VOXELS
    k, j, i = np.nonzero(saved_array)
    points = [saved.TransformIndexToPhysicalPoint((int(a), int(b), int(c))) for a, b, c in zip(i, j, k)]
    index = np.array([source.TransformPhysicalPointToIndex(p) for p in points])
    assert (sitk.GetArrayFromImage(source)[index[:, 2], index[:, 1], index[:, 0]] == 1).all()

    again = slicer.util.loadSegmentation(str(tmp_path / "liver.seg.nrrd"))
    assert again.GetName() == "liver"
    segment_id = again.GetSegmentation().GetNthSegmentID(0)
    np.testing.assert_array_equal(
        slicer.util.arrayFromSegmentBinaryLabelmap(again, segment_id, ct), sitk.GetArrayFromImage(source)
    )

    label = slicer.util.loadLabelVolume(str(real_ct_dir / "liver_seg.nrrd"))
    assert slicer.util.saveNode(label, str(tmp_path / "liver.nii.gz"))
    nifti = sitk.ReadImage(str(tmp_path / "liver.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(nifti), sitk.GetArrayFromImage(source))
    np.testing.assert_allclose(nifti.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(nifti.GetSpacing(), source.GetSpacing(), atol=1e-6)


def test_dicom_volume_saves_as_one_file(slicer_scene, real_ct_dir: Path, tmp_path: Path) -> None:
    import slicer.util

    ct = slicer.util.loadVolume(str(real_ct_dir / DICOM_FILE), {"singleFile": False})
    assert slicer.util.saveNode(ct, str(tmp_path / "ct.nrrd"))
    saved = sitk.ReadImage(str(tmp_path / "ct.nrrd"))
    series = _series(real_ct_dir)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), sitk.GetArrayFromImage(series))
    np.testing.assert_allclose(saved.GetOrigin(), series.GetOrigin(), atol=1e-4)


def test_update_segment_from_array(slicer_scene, real_ct_dir: Path) -> None:
    import slicer
    import slicer.util

    ct = slicer.util.loadVolume(str(real_ct_dir / DICOM_FILE), {"singleFile": False})
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("box")
    box = np.zeros(slicer.util.arrayFromVolume(ct).shape, np.uint8)
    box[1:, 100:150, 200:260] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(box, segmentation, segment_id, ct)
    back = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, ct)
    np.testing.assert_array_equal(back, box)


def test_tables_models_transforms_markups_round_trip(slicer_scene, tmp_path: Path) -> None:
    import slicer
    import slicer.util
    import vtk

    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "metrics")
    slicer.util.updateTableFromArray(table, [np.array([1.5, 2.5]), np.array([3.0, 4.0])], ["a", "b"])
    assert slicer.util.saveNode(table, str(tmp_path / "metrics.csv"))
    loaded_table = slicer.util.loadTable(str(tmp_path / "metrics.csv"))
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(loaded_table, "b"), [3.0, 4.0])

    sphere = vtk.vtkSphereSource()
    sphere.Update()
    model = slicer.modules.models.logic().AddModel(sphere.GetOutput())
    assert slicer.util.saveNode(model, str(tmp_path / "sphere.vtk"))
    loaded = slicer.util.loadModel(str(tmp_path / "sphere.vtk"))
    assert loaded.GetPolyData().GetNumberOfPoints() == sphere.GetOutput().GetNumberOfPoints()

    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = np.eye(4)
    matrix[:3, 3] = (1.0, -2.0, 3.5)
    slicer.util.updateTransformMatrixFromArray(transform, matrix)
    assert slicer.util.saveNode(transform, str(tmp_path / "shift.h5"))
    np.testing.assert_allclose(
        slicer.util.arrayFromTransformMatrix(slicer.util.loadTransform(str(tmp_path / "shift.h5"))), matrix
    )

    points = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "points")
    points.AddControlPoint(10.0, 20.0, 30.0)
    assert slicer.util.saveNode(points, str(tmp_path / "points.mrk.json"))
    np.testing.assert_allclose(
        slicer.util.arrayFromMarkupsControlPoints(slicer.util.loadMarkups(str(tmp_path / "points.mrk.json"))),
        [[10.0, 20.0, 30.0]],
    )


def test_file_types_and_application_behaviour(slicer_env, real_ct_dir: Path) -> None:
    import slicer
    import slicer.util

    io = slicer.app.coreIOManager()
    assert io.fileType("a/b.seg.nrrd") == "SegmentationFile"
    assert io.fileType("a/b.nii.gz") == "VolumeFile"
    assert io.fileType(str(real_ct_dir / "liver_seg.nrrd")) == "VolumeFile"  # plain label map NRRD
    assert io.fileType("a/b.csv") == "TableFile"
    assert io.fileType("a/b.xyz") == "NoFile"
    assert io.fileWriterFileType(slicer.vtkMRMLSegmentationNode()) == "SegmentationFile"
    assert io.fileWriterFileType(slicer.vtkMRMLLabelMapVolumeNode()) == "VolumeFile"
    # no dialogs headless (slicer.util's *Display functions import qt); exit ends with the given code
    assert slicer.app.testingEnabled()
    with pytest.raises(SystemExit) as exited:
        slicer.util.exit(3)
    assert exited.value.code == 3
