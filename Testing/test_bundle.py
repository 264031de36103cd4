"""Model bundles: round trip, and every refusal of a corrupt, tampered or mismatched bundle."""

from __future__ import annotations

import json

import pytest
import torch

from MPUNetCore.bundle import BundleError, ModelCard, SegmentClass, build_network, load_bundle, save_bundle
from MPUNetCore.fileutils import sha256_of
from Testing.slicer_models import TINY_ARCHITECTURE

ARCH = TINY_ARCHITECTURE


def make_card(arch=None) -> ModelCard:
    return ModelCard(
        name="tiny",
        architecture=dict(arch or ARCH),
        classes=[
            SegmentClass(0, "Background"),
            SegmentClass(1, "Liver", [0.8, 0.4, 0.3]),
            SegmentClass(2, "Liver tumor", [0.9, 0.9, 0.2]),
        ],
        preprocessing={"hu_window": [-200, 200], "scale": 200.0},
        inference={"window": [16, 32, 32], "overlap": 0.25},
    )


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_network(ARCH)
    return model, save_bundle(model, make_card(), tmp_path / "tiny.json")


def test_round_trip_gives_the_same_predictions(saved):
    model, card_path = saved
    x = torch.randn(1, 1, 16, 32, 32)
    loaded = load_bundle(card_path)
    assert not loaded.model.training
    torch.testing.assert_close(loaded.model(x), model.eval()(x), rtol=0, atol=0)
    assert loaded.card.classes[1].name == "Liver"
    assert loaded.card.weights["sha256"] == sha256_of(card_path.with_suffix(".pt"))


@pytest.mark.parametrize("given", ["card", "weights", "folder"])
def test_bundle_found_from_card_weights_or_folder(saved, given):
    _, card_path = saved
    path = {"card": card_path, "weights": card_path.with_suffix(".pt"), "folder": card_path.parent}[given]
    assert load_bundle(path).path == card_path


def test_tampered_weights_are_refused(saved):
    _, card_path = saved
    weights = card_path.with_suffix(".pt")
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256"):
        load_bundle(card_path)


def rewrite_card(card_path, **changes):
    data = json.loads(card_path.read_text())
    data.update(changes)
    card_path.write_text(json.dumps(data))


def test_weights_that_do_not_fit_the_architecture_are_refused(saved):
    _, card_path = saved
    rewrite_card(card_path, architecture={**ARCH, "overrides": {"channels": [8, 8, 8, 8]}})
    with pytest.raises(BundleError, match="do not fit the architecture.*wrong shape"):
        load_bundle(card_path)


def test_pickled_objects_are_never_unpickled(saved):
    _, card_path = saved
    weights = card_path.with_suffix(".pt")
    torch.save({"state_dict": {}, "payload": SegmentClass(0, "x")}, weights)  # needs full unpickling
    rewrite_card(card_path, weights={"file": weights.name, "sha256": sha256_of(weights)})
    with pytest.raises(BundleError, match="not a plain weights file.*may be unsafe") as refused:
        load_bundle(card_path)
    assert "weights_only" not in str(refused.value)  # never repeat torch's advice to unpickle it


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "something-else"}, "not an MPUNet model card"),
        ({"format_version": 99}, "newer than this MPUNet"),
        ({"architecture": {**ARCH, "network": "ResNet"}}, "unknown network 'ResNet'"),
        ({"architecture": {**ARCH, "out_channels": 2}}, "2 outputs but the card lists 3 classes"),
        (
            {"classes": [{"value": 0, "name": "bg"}, {"value": 2, "name": "x"}, {"value": 3, "name": "y"}]},
            "class values must be 0..2",
        ),
    ],
)
def test_inconsistent_cards_are_refused(saved, changes, message):
    _, card_path = saved
    rewrite_card(card_path, **changes)
    with pytest.raises(BundleError, match=message):
        load_bundle(card_path)


def test_missing_files_are_named(tmp_path, saved):
    _, card_path = saved
    card_path.with_suffix(".pt").unlink()
    with pytest.raises(BundleError, match="tiny.pt .* are missing"):
        load_bundle(card_path)
    with pytest.raises(BundleError, match="no model card"):
        load_bundle(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read the model card"):
        load_bundle(tmp_path / "broken.json")


def test_save_never_overwrites_unless_asked(saved):
    model, card_path = saved
    before = card_path.read_bytes(), card_path.with_suffix(".pt").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_bundle(model, make_card(), card_path)
    assert (card_path.read_bytes(), card_path.with_suffix(".pt").read_bytes()) == before
    save_bundle(model, make_card(), card_path, overwrite=True)
    assert sorted(p.name for p in card_path.parent.iterdir()) == ["tiny.json", "tiny.pt"]  # no temp files
