"""Click to segment on Slicer's real MRML (slicer-core), with the model in a real background worker process.

Covered: the input-grid box of one network window (checked against ``MPUNetCore.inference.Preprocessing``),
the component under a click (checked against a hand-written flood fill), and whole clicks through
``MPUNetLogic.segmentAtPoint``: a model that says "background" everywhere gives "nothing found at this point"
and changes nothing; a model that says "tumour" everywhere shows that exactly the planned box was segmented
and lands on the right voxels; new segments, unique names, merging, the markups-node input, a point outside
the volume. These constant models are real bundles (a U-Net whose weights are zero and whose last head's
bias picks the class), so their output is known exactly. Clicks inside a phantom's tumour and inside its
liver, which must find that tumour (or liver) and nothing else, run the bundled demo model ("demo-phantom").
Nothing is mocked.
"""

from __future__ import annotations

import os
import time
from collections import deque
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from MPUNetSegmentationLib.click_roi import NOTHING_FOUND, Box, click_box, component_at, open_faces

PREPROCESSINGS = (
    {"hu_window": [-200, 200], "scale": 200.0, "inplane_factor": 0.5, "slice_spacing": 1.0},
    {"hu_window": [-200, 200], "scale": 200.0, "target_spacing": [2.0, 2.0], "slice_spacing": 3.0},
    {"hu_window": [-200, 200], "scale": 200.0, "inplane_factor": 0.5, "slice_spacing": None},
)


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS)
@pytest.mark.parametrize("spacing", [(0.8, 0.8, 2.5), (0.6257, 0.6257, 1.25), (1.0, 0.7, 5.0)])
def test_click_box_is_the_largest_box_one_window_covers(preprocessing, spacing) -> None:
    from MPUNetCore.inference import Preprocessing

    prep = Preprocessing.from_dict(preprocessing)
    shape, window = (120, 300, 280), (16, 64, 96)
    for index in [(0, 0, 0), (60, 150, 140), (119, 299, 279), (5, 290, 3)]:
        box = click_box(index, shape, spacing, window, preprocessing)
        assert box.contains(index)
        assert all(0 <= a < b <= n for a, b, n in zip(box.start, box.stop, shape))
        network = prep.network_shape(box.shape, spacing)
        assert all(n <= w for n, w in zip(network, window)), (box, network)
        for axis in range(3):  # one more voxel would need a second window (or the box is the whole axis)
            bigger = list(box.shape)
            bigger[axis] += 1
            assert box.shape[axis] == shape[axis] or prep.network_shape(bigger, spacing)[axis] > window[axis]
            centre = (box.start[axis] + box.stop[axis] - 1) / 2
            clamped = box.start[axis] == 0 or box.stop[axis] == shape[axis]
            assert clamped or abs(centre - index[axis]) <= 1


def test_click_box_full_extent_window_and_bad_points() -> None:
    box = click_box((3, 10, 20), (40, 64, 80), (0.7, 0.7, 3.0), (32, None, 0), PREPROCESSINGS[1])
    assert box.shape == (32, 64, 80)  # 32 slices of 3 mm = 32 input slices of 3 mm; full in-plane
    with pytest.raises(ValueError, match="outside the volume"):
        click_box((40, 0, 0), (40, 64, 80), (0.7, 0.7, 3.0), (32, None, None), PREPROCESSINGS[1])


def test_click_window_is_the_training_patch_when_the_card_records_it() -> None:
    from MPUNetCore.bundle import ModelCard, SegmentClass
    from MPUNetCore.worker import click_window

    def card(inference, training=None):
        classes = [SegmentClass(0, "Background"), SegmentClass(1, "Liver")]
        architecture = {"network": "UNet", "out_channels": 2}
        return ModelCard("m", architecture, classes, {}, inference=inference, training=training or {})

    assert click_window(card({"window": [32, None, None]})) == [32, None, None]
    assert click_window(card({"window": [32, 0, 0]})) == [32, None, None]
    trained = card({"window": [32, None, None]}, {"config": {"train": {"patch": [32, 64, 64]}}})
    assert click_window(trained) == [32, 64, 64]
    explicit = card({"window": [32, None, None], "click_window": [16, 96, 96]}, trained.training)
    assert click_window(explicit) == [16, 96, 96]


def _lesions() -> np.ndarray:
    """A liver (1) with two tumours (2) touching only along an edge, and a separate liver island."""
    labels = np.zeros((12, 20, 20), np.uint8)
    labels[2:10, 2:16, 2:16] = 1
    labels[4:7, 4:7, 4:7] = 2
    labels[7:9, 7:9, 4:7] = 2  # shares only an edge (z, y) with the first tumour
    labels[3:5, 17:19, 17:19] = 1  # a liver island
    return labels


def flood(mask: np.ndarray, seed, full: bool = False) -> np.ndarray:
    """The connected part of ``mask`` holding ``seed`` (6- or 26-neighbours), by breadth-first search."""
    steps = [d for d in product((-1, 0, 1), repeat=3) if any(d) and (full or sum(map(abs, d)) == 1)]
    region = np.zeros(mask.shape, bool)
    region[tuple(seed)] = True
    queue = deque([tuple(seed)])
    while queue:
        voxel = queue.popleft()
        for step in steps:
            near = tuple(v + s for v, s in zip(voxel, step))
            if all(0 <= n < size for n, size in zip(near, mask.shape)) and mask[near] and not region[near]:
                region[near] = True
                queue.append(near)
    return region


def test_component_under_the_click_matches_a_flood_fill() -> None:
    labels = _lesions()
    component = component_at(labels, (5, 5, 5))
    assert component.class_name == "tumor" and component.label == 2
    np.testing.assert_array_equal(component.mask, flood(labels == 2, (5, 5, 5)))
    assert not component.mask[7, 7, 5]  # 6-connectivity: the tumour touching along an edge stays apart
    joined = component_at(labels, (5, 5, 5), fully_connected=True)
    np.testing.assert_array_equal(joined.mask, flood(labels == 2, (5, 5, 5), full=True))
    assert joined.mask[7, 7, 5]
    liver = component_at(labels, (3, 3, 12))  # liver = labels 1 and 2 (LiTS): the organ with its tumours
    assert liver.class_name == "liver"
    np.testing.assert_array_equal(liver.mask, flood(labels > 0, (3, 3, 12)))
    assert liver.mask[5, 5, 5] and not liver.mask[3, 17, 17]
    assert component_at(labels, (0, 0, 0)) is None


def test_component_reaching_an_open_face_is_flagged() -> None:
    labels = _lesions()
    box = Box((0, 0, 0), (12, 20, 20))
    assert not component_at(labels, (5, 5, 5), open_faces=open_faces(box, (12, 20, 20))).touches_border
    cut = labels[:, :, 5:]  # the first tumour is cut by the box's x0 face, which has voxels beyond it
    faces = open_faces(Box((0, 0, 5), (12, 20, 20)), (12, 20, 20))
    assert component_at(cut, (5, 5, 0), open_faces=faces).touches_border


# ----------------------------------------------------------------------------- whole clicks, real worker


def write_constant_bundle(folder: Path, label: int) -> Path:
    """A real U-Net bundle whose prediction is ``label`` everywhere (zero weights, last head's bias)."""
    import torch

    from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, save_bundle
    from Testing.slicer_models import TINY_ARCHITECTURE

    architecture = dict(TINY_ARCHITECTURE)
    model = build_network(architecture)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.heads[-1].conv.bias[label] = 5.0
    card = ModelCard(
        name=f"constant-{label}",
        architecture=architecture,
        classes=[
            SegmentClass(0, "Background", [0.0, 0.0, 0.0]),
            SegmentClass(1, "Liver", [0.8, 0.5, 0.4]),
            SegmentClass(2, "Liver tumor", [0.5, 0.9, 0.5]),
        ],
        preprocessing={
            "hu_window": [-200, 200],
            "scale": 200.0,
            "target_spacing": [2.0, 2.0],
            "slice_spacing": 2.0,
        },
        inference={"window": [16, 16, 16], "overlap": 0.25},
    )
    return save_bundle(model, card, Path(folder) / f"constant-{label}.json", overwrite=True)


@pytest.fixture(scope="module")
def constant_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("constant-models")
    return {label: write_constant_bundle(folder, label) for label in (0, 2)}


@pytest.fixture(scope="module")
def click_logic(tmp_path_factory):
    from MPUNetSegmentationLib.logic import MPUNetLogic

    os.environ["OMP_NUM_THREADS"] = "1"
    logic = MPUNetLogic(temporaryDirectory=str(tmp_path_factory.mktemp("click-runs")))
    yield logic
    logic.stopClickSegmenter()


@pytest.fixture
def phantom_volume(slicer_scene, tmp_path):
    import slicer.util

    from Testing.slicer_models import write_phantom

    ct, label = write_phantom(tmp_path, seed=2, shape=(40, 96, 96))
    return slicer.util.loadVolume(str(ct)), slicer.util.loadLabelVolume(str(label))


def _ras_of(volume, index_zyx):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint([float(index_zyx[2]), float(index_zyx[1]), float(index_zyx[0]), 1.0])[:3]


def _segment_mask(node, segment_id, volume) -> np.ndarray:
    import slicer.util

    return slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume) > 0


def test_click_on_background_finds_nothing_and_changes_nothing(
    slicer_scene, click_logic, constant_models, phantom_volume
) -> None:
    import slicer.util

    volume, _ = phantom_volume
    before = slicer.util.arrayFromVolume(volume).copy()
    nodes_before = slicer_scene.GetNumberOfNodes()
    result = click_logic.segmentAtPoint(
        volume, _ras_of(volume, (12, 5, 5)), model=str(constant_models[0]), timeout=120
    )
    assert not result.found and result.message == NOTHING_FOUND
    assert result.segmentation_node is None and slicer_scene.GetNumberOfNodes() == nodes_before
    output = slicer_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    output.GetSegmentation().AddEmptySegment("kept", "Kept")
    modified = output.GetMTime()
    result = click_logic.segmentAtPoint(
        volume, _ras_of(volume, (3, 50, 40)), output, model=str(constant_models[0])
    )
    assert not result.found and result.message == NOTHING_FOUND
    assert output.GetMTime() == modified and output.GetSegmentation().GetNumberOfSegments() == 1
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(volume), before)


def test_click_segments_exactly_one_window_around_the_point(
    slicer_scene, click_logic, constant_models, phantom_volume
) -> None:
    import slicer.util
    from MPUNetSegmentationLib.scene_arrays import volume_geometry

    volume, _ = phantom_volume
    shape = slicer.util.arrayFromVolume(volume).shape
    index = (30, 10, 70)
    result = click_logic.segmentAtPoint(
        volume, _ras_of(volume, index), model=str(constant_models[2]), timeout=120
    )
    assert result.found and result.class_name == "tumor"
    assert result.segmentation_node.GetName() == f"{volume.GetName()} MPU-Net"
    preprocessing = {"target_spacing": [2.0, 2.0], "slice_spacing": 2.0}
    expected_box = click_box(index, shape, volume_geometry(volume).spacing, (16, 16, 16), preprocessing)
    assert expected_box.stop[0] == shape[0] and expected_box.shape[1] < shape[1]  # clamped in z, cut in y
    assert result.box == expected_box
    expected = np.zeros(shape, bool)
    expected[expected_box.slices] = True  # "tumour everywhere": the component is the whole box
    np.testing.assert_array_equal(
        _segment_mask(result.segmentation_node, result.segment_id, volume), expected
    )
    segment = result.segmentation_node.GetSegmentation().GetSegment(result.segment_id)
    assert segment.GetName() == "Liver tumor" and segment.GetColor() == pytest.approx((0.5, 0.9, 0.5))
    assert "Neoplasm" in segment.GetTerminology()
    assert result.voxel_count == expected.sum() and result.touches_border
    assert result.volume_ml == pytest.approx(expected.sum() * np.prod(volume.GetSpacing()) / 1000)


def test_repeated_clicks_add_segments_or_merge_into_the_chosen_one(
    slicer_scene, click_logic, constant_models, phantom_volume
) -> None:
    volume, _ = phantom_volume
    model = str(constant_models[2])
    first = click_logic.segmentAtPoint(volume, _ras_of(volume, (2, 5, 5)), model=model, timeout=120)
    node = first.segmentation_node
    markups = slicer_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "clicks")
    markups.AddControlPoint(*_ras_of(volume, (37, 90, 90)))
    second = click_logic.segmentAtPoint(volume, markups, node, model=model, oneSegmentPerClick=True)
    assert second.segmentation_node is node and second.segment_name == "Liver tumor 2"
    assert node.GetSegmentation().GetNumberOfSegments() == 2
    first_mask = _segment_mask(node, first.segment_id, volume)
    second_mask = _segment_mask(node, second.segment_id, volume)
    assert not (first_mask & second_mask).any()  # two far-apart windows
    merged = click_logic.segmentAtPoint(volume, markups, node, segmentId=first.segment_id, model=model)
    assert merged.segment_id == first.segment_id and node.GetSegmentation().GetNumberOfSegments() == 2
    np.testing.assert_array_equal(_segment_mask(node, first.segment_id, volume), first_mask | second_mask)
    np.testing.assert_array_equal(_segment_mask(node, second.segment_id, volume), second_mask)
    with pytest.raises(ValueError, match="outside the volume"):
        click_logic.segmentAtPoint(volume, (1000.0, 1000.0, 1000.0), node, model=model)
    with pytest.raises(ValueError, match="no segment with ID"):
        click_logic.segmentAtPoint(volume, markups, node, segmentId="nope", model=model)


def _segmentation_state(node, volume):
    """Everything a click may change: segment IDs in order, names, colours, and each segment's voxels."""
    segmentation = node.GetSegmentation()
    state = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        state.append(
            (
                segment_id,
                segment.GetName(),
                tuple(segment.GetColor()),
                _segment_mask(node, segment_id, volume),
            )
        )
    return state


def _assert_same_state(actual, expected) -> None:
    assert [item[:3] for item in actual] == [item[:3] for item in expected]
    for (segment_id, *_, mask), (_, *_, expected_mask) in zip(actual, expected):
        np.testing.assert_array_equal(mask, expected_mask, err_msg=segment_id)


def _window_mask(volume, index) -> np.ndarray:
    """What a click of the constant tumour model at ``index`` segments: its whole window (see above)."""
    import slicer.util
    from MPUNetSegmentationLib.scene_arrays import volume_geometry

    shape = slicer.util.arrayFromVolume(volume).shape
    preprocessing = {"target_spacing": [2.0, 2.0], "slice_spacing": 2.0}
    mask = np.zeros(shape, bool)
    mask[click_box(index, shape, volume_geometry(volume).spacing, (16, 16, 16), preprocessing).slices] = True
    return mask


def test_clicks_of_one_class_merge_unless_one_segment_per_click(
    slicer_scene, click_logic, constant_models, phantom_volume
) -> None:
    volume, _ = phantom_volume
    model, a, b = str(constant_models[2]), (2, 5, 5), (37, 90, 90)
    for per_click in (False, True):
        first = click_logic.segmentAtPoint(volume, _ras_of(volume, a), model=model, timeout=120)
        node = first.segmentation_node
        second = click_logic.segmentAtPoint(
            volume, _ras_of(volume, b), node, model=model, oneSegmentPerClick=per_click
        )
        segments = [
            node.GetSegmentation().GetNthSegment(i).GetName()
            for i in range(node.GetSegmentation().GetNumberOfSegments())
        ]
        if per_click:
            assert segments == ["Liver tumor", "Liver tumor 2"] and second.segment_id != first.segment_id
            np.testing.assert_array_equal(
                _segment_mask(node, first.segment_id, volume), _window_mask(volume, a)
            )
            np.testing.assert_array_equal(
                _segment_mask(node, second.segment_id, volume), _window_mask(volume, b)
            )
        else:
            assert segments == ["Liver tumor"] and second.segment_id == first.segment_id
            assert "merged into 'Liver tumor'" in second.message
            np.testing.assert_array_equal(
                _segment_mask(node, first.segment_id, volume),
                _window_mask(volume, a) | _window_mask(volume, b),
            )


def test_undo_restores_the_segments_exactly_as_before_each_click(
    slicer_scene, click_logic, constant_models, phantom_volume
) -> None:
    import slicer.util

    volume, _ = phantom_volume
    model = str(constant_models[2])
    click_logic.clearClickUndo()
    first = click_logic.segmentAtPoint(volume, _ras_of(volume, (2, 5, 5)), model=model, timeout=120)
    node = first.segmentation_node
    # a segment of the user's that overlaps the next click's window, and another "Liver tumor" voxel set
    kept = node.GetSegmentation().AddEmptySegment("kept", "Kept", [0.1, 0.2, 0.3])
    manual = np.zeros(slicer.util.arrayFromVolume(volume).shape, np.uint8)
    manual[30:40, 80:96, 80:96] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(manual, node, kept, volume)
    before = _segmentation_state(node, volume)
    assert click_logic.canUndoClick

    merged = click_logic.segmentAtPoint(volume, _ras_of(volume, (37, 90, 90)), node, model=model)
    assert merged.segment_id == first.segment_id  # merged into the class's segment
    assert not np.array_equal(_segment_mask(node, first.segment_id, volume), before[0][3])
    assert click_logic.undoLastClick().description.startswith("tumor")
    _assert_same_state(_segmentation_state(node, volume), before)

    added = click_logic.segmentAtPoint(
        volume, _ras_of(volume, (20, 50, 50)), node, model=model, oneSegmentPerClick=True
    )
    assert node.GetSegmentation().GetSegment(added.segment_id) is not None
    click_logic.undoLastClick()
    assert node.GetSegmentation().GetSegment(added.segment_id) is None  # the segment it created is gone
    _assert_same_state(_segmentation_state(node, volume), before)

    click_logic.undoLastClick()  # the first click created the node: undoing it removes the node
    assert (
        node.GetScene() is None
        and not slicer_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()
    )
    assert not click_logic.canUndoClick and click_logic.undoLastClick() is None


def test_scene_closed_while_a_click_runs_drops_its_result(
    slicer_scene, click_logic, constant_models, phantom_volume
) -> None:
    volume, _ = phantom_volume
    click_logic.segmentAtPoint(
        volume, _ras_of(volume, (20, 50, 50)), model=str(constant_models[2]), waitForCompletion=False
    )
    assert click_logic.clicksPending
    slicer_scene.Clear(False)  # File > Close scene: fires StartCloseEvent, removes the volume
    deadline = time.monotonic() + 120
    finished = []
    while click_logic.clicksPending:
        finished += click_logic.pollClicks()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert finished == [] and not slicer_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()


def test_a_model_that_cannot_load_reports_the_workers_error(slicer_scene, tmp_path, phantom_volume) -> None:
    from MPUNetSegmentationLib.logic import MPUNetLogic
    from MPUNetSegmentationLib.model_worker import WorkerFailed

    volume, _ = phantom_volume
    logic = MPUNetLogic(temporaryDirectory=str(tmp_path))
    nodes_before = slicer_scene.GetNumberOfNodes()
    try:
        with pytest.raises(WorkerFailed, match="does not exist"):
            logic.segmentAtPoint(
                volume, _ras_of(volume, (20, 48, 48)), model=str(tmp_path / "nope.json"), timeout=120
            )
        assert slicer_scene.GetNumberOfNodes() == nodes_before and not logic.clicksPending
    finally:
        logic.stopClickSegmenter()


# ----------------------------------------------------------------------------- trained demo model


TUMOUR_PHANTOM_SEED = 2  # see test_click_in_a_phantom_tumour_finds_that_tumour_and_nothing_else


def _demo_model() -> str:
    from MPUNetCore.registry import resolve_model

    return str(resolve_model("demo-phantom"))  # shipped in the package: its absence is a failure


def _deepest_voxel(mask: np.ndarray):
    """The voxel of ``mask`` farthest from its border (a click well inside, not on an edge)."""
    import SimpleITK as sitk

    distance = sitk.SignedMaurerDistanceMap(
        sitk.GetImageFromArray(mask.astype(np.uint8)), insideIsPositive=True, squaredDistance=False
    )
    inside = sitk.GetArrayFromImage(distance)
    return np.unravel_index(np.argmax(inside), inside.shape)


@pytest.mark.slow
def test_click_in_a_phantom_tumour_finds_that_tumour_and_nothing_else(
    slicer_scene, click_logic, tmp_path
) -> None:
    """The bundled demo model, on a phantom it never saw, clicked deep inside that phantom's largest tumour.

    The demo model finds only part of the phantoms' tumours (held-out tumour Dice 0.19 per case, in its
    card): on the demo's phantoms (``demo_phantom``, seeds 0-9) it covers 0-80 % of each one's largest
    tumour. Seed 2 was chosen because its largest tumour (5,349 voxels) is 80 % covered, with 94 % of the
    predicted tumour inside it; this test checks the click path with a trained model - the window, the
    component under the point, the segment - not the model's recall.
    """
    import slicer.util
    from scipy import ndimage

    from Testing.slicer_models import write_phantom

    model = _demo_model()
    ct, label = write_phantom(tmp_path, seed=TUMOUR_PHANTOM_SEED, shape=(80, 256, 256), anatomical=True)
    volume = slicer.util.loadVolume(str(ct))
    reference = slicer.util.arrayFromVolume(slicer.util.loadLabelVolume(str(label)))
    components, count = ndimage.label(reference == 2)
    sizes = ndimage.sum(np.ones_like(components), components, range(1, count + 1))
    tumour = components == 1 + int(np.argmax(sizes))
    others = (reference == 2) & ~tumour
    result = click_logic.segmentAtPoint(
        volume, _ras_of(volume, _deepest_voxel(tumour)), model=model, timeout=300
    )
    assert result.found and result.class_name == "tumor", result.message
    mask = _segment_mask(result.segmentation_node, result.segment_id, volume)
    inside = (mask & tumour).sum()
    assert inside >= 0.3 * tumour.sum(), f"the segment covers {inside / tumour.sum():.0%} of the tumour"
    assert inside >= 0.6 * mask.sum(), f"only {inside / mask.sum():.0%} of the segment is that tumour"
    assert not (mask & others).any()  # nothing of the other tumours
    assert not (mask & (reference == 0)).sum() > 0.2 * mask.sum()  # hardly anything outside the liver


@pytest.mark.slow
def test_click_in_a_phantom_liver_finds_that_liver_and_nothing_else(
    slicer_scene, click_logic, tmp_path
) -> None:
    """The bundled demo model, clicked deep inside a phantom's liver, returns that liver."""
    import slicer.util

    from Testing.slicer_models import write_phantom

    model = _demo_model()
    ct, label = write_phantom(tmp_path, seed=2, shape=(80, 256, 256), anatomical=True)
    volume = slicer.util.loadVolume(str(ct))
    reference = slicer.util.arrayFromVolume(slicer.util.loadLabelVolume(str(label)))
    liver = reference >= 1
    centre = _deepest_voxel(reference == 1)  # far from the liver's border and from every tumour
    result = click_logic.segmentAtPoint(volume, _ras_of(volume, centre), model=model, timeout=300)
    assert result.found and result.class_name == "liver", result.message
    mask = _segment_mask(result.segmentation_node, result.segment_id, volume)
    dice = 2 * (mask & liver).sum() / (mask.sum() + liver.sum())
    assert dice > 0.7, f"Dice with the phantom's liver {dice:.2f}"
    assert (mask & ~liver).sum() <= 0.25 * mask.sum()  # not spilling into the surroundings
    air = click_logic.segmentAtPoint(
        volume, _ras_of(volume, (24, 2, 2)), result.segmentation_node, model=model
    )
    assert not air.found and air.message == NOTHING_FOUND
