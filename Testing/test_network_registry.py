"""The network registry: cards, bundles and Training build networks by name through one table."""

from __future__ import annotations

import inspect

import pytest
import torch

from MPUNetCore.bundle import BundleError
from MPUNetCore.model_card import ModelCard
from MPUNetCore.networks import PRESETS, MPUNet, UNet
from MPUNetCore.networks.registry import (
    COMMON_ARGUMENTS,
    NETWORKS,
    NetworkSpec,
    build_network,
    network_spec,
    register_network,
)

CLASSES = [{"value": 0, "name": "Background"}, {"value": 1, "name": "Liver"}]


def _card(architecture: dict) -> dict:
    return {
        "format": "mpunet-model-card",
        "name": "m",
        "architecture": architecture,
        "classes": CLASSES,
        "preprocessing": {},
    }


def test_each_spec_matches_its_class_signature() -> None:
    """The registry's options are exactly what the class accepts, so cards cannot drift from code."""
    assert NETWORKS["MPUNet"].network_class() is MPUNet and NETWORKS["UNet"].network_class() is UNet
    assert set(NETWORKS["MPUNet"].presets) == set(PRESETS)
    assert set(NETWORKS["MPUNet"].options) == {key for preset in PRESETS.values() for key in preset}
    unet = list(inspect.signature(UNet).parameters)
    assert tuple(unet[:3]) == COMMON_ARGUMENTS and set(unet[3:]) == set(NETWORKS["UNet"].options)
    for spec in NETWORKS.values():  # spatial_dims first in every network signature
        assert list(inspect.signature(spec.network_class()).parameters)[:3] == list(COMMON_ARGUMENTS)


def test_build_network_equals_direct_construction() -> None:
    record = {
        "network": "MPUNet",
        "preset": "paper",
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 3,
        "overrides": {"channels": [4, 8, 16, 32, 64], "position_grid": [2, 2]},
    }
    torch.manual_seed(0)
    built = build_network(record)
    torch.manual_seed(0)
    direct = MPUNet(
        spatial_dims=2, out_channels=3, preset="paper", channels=(4, 8, 16, 32, 64), position_grid=(2, 2)
    )
    assert not built.training
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(built(x), direct.eval()(x))


def test_unknown_networks_presets_and_options_are_named_in_card_errors() -> None:
    with pytest.raises(BundleError, match="unknown network 'VNet'; this version knows MPUNet, UNet"):
        ModelCard.from_dict(_card({"network": "VNet"}), source="c.json")
    with pytest.raises(
        BundleError, match="c.json: unknown MPUNet preset 'tiny'; choose one of released, paper"
    ):
        ModelCard.from_dict(_card({"network": "MPUNet", "preset": "tiny"}), source="c.json")
    with pytest.raises(BundleError, match="UNet takes no option\\(s\\) 'dropout'; its options: channels"):
        ModelCard.from_dict(_card({"network": "UNet", "overrides": {"dropout": 0.1}}), source="c.json")
    with pytest.raises(ValueError, match="UNet has no presets"):
        build_network({"network": "UNet", "preset": "released"})


def test_a_registered_network_is_usable_by_cards_and_bundles() -> None:
    spec = register_network(
        NetworkSpec("TinyUNet", "MPUNetCore.networks.unet:UNet", "test", options=("channels",))
    )
    try:
        assert network_spec("TinyUNet") is spec
        card = ModelCard.from_dict(_card({"network": "TinyUNet", "out_channels": 2}), source="c.json")
        model = build_network({**card.architecture, "overrides": {"channels": [2, 4, 4, 8]}})
        assert isinstance(model, UNet) and model.channels == (2, 4, 4, 8)
    finally:
        del NETWORKS["TinyUNet"]


def test_training_config_uses_the_registry() -> None:
    from Training.config import Config
    from Training.models import architecture

    config = Config().merged({"model": {"network": "UNet", "final_channels": 4}}, "test")
    record = architecture(config)
    assert record["network"] == "UNet" and "preset" not in record
    assert record["overrides"] == {"final_channels": 4}
    config = config.merged({"model": {"network": "MPUNet"}}, "test")
    with pytest.raises(ValueError, match="model.final_channels = 4: MPUNet takes no 'final_channels'"):
        architecture(config)
