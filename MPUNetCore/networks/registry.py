"""The network registry: a network's name -> its class and the arguments a card or a config may set.

Model cards (``architecture.network``), bundles, Training's ``[model]`` section and its
architecture records all go through :data:`NETWORKS`; adding a network means writing its class in
this package and registering it here (or with :func:`register_network` from outside), nothing else.

An architecture record, as a model card stores it::

    {"network": "MPUNet", "preset": "released", "spatial_dims": 3, "in_channels": 1,
     "out_channels": 3, "overrides": {"channels": [8, 16, 32, 48, 64], "fusion": "learned"}}

This module imports no torch: the Slicer GUI validates cards with it. The class is imported when a
network is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Tuple

__all__ = ["NETWORKS", "NetworkSpec", "build_network", "network_spec", "register_network"]

#: Arguments every network takes, in this order (the rest are its `options`).
COMMON_ARGUMENTS = ("spatial_dims", "in_channels", "out_channels")


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one network from an architecture record.

    Attributes:
        name: the name cards and configs use ("MPUNet").
        target: "package.module:Class", imported only when the network is built.
        description: one line for listings and error messages.
        options: keyword arguments beyond ``COMMON_ARGUMENTS`` that ``overrides`` may set; the class
            itself validates their values.
        presets: values of the class's ``preset`` argument; empty when it has none.
    """

    name: str
    target: str
    description: str
    options: Tuple[str, ...]
    presets: Tuple[str, ...] = ()

    def network_class(self) -> type:
        """The network class (imports torch)."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def check(self, architecture: Mapping[str, Any], source: str = "architecture") -> None:
        """Check the preset and the option names of a record (not their values).

        Raises:
            ValueError: an unknown preset or option, naming ``source`` and what is allowed.
        """
        preset = architecture.get("preset")
        if self.presets and preset is not None and preset not in self.presets:
            raise ValueError(
                f"{source}: unknown {self.name} preset {preset!r}; choose one of {', '.join(self.presets)}"
            )
        if not self.presets and preset is not None:
            raise ValueError(f"{source}: {self.name} has no presets (remove 'preset': {preset!r})")
        unknown = sorted(set(architecture.get("overrides") or {}) - set(self.options))
        if unknown:
            raise ValueError(
                f"{source}: {self.name} takes no option(s) {', '.join(map(repr, unknown))}; "
                f"its options: {', '.join(self.options)}"
            )

    def build(self, architecture: Mapping[str, Any]) -> Any:
        """The network a record describes, in eval mode (weights left at initialisation).

        Raises:
            ValueError: an unknown preset or option, or a value the class refuses.
        """
        self.check(architecture)
        kwargs: Dict[str, Any] = {k: architecture[k] for k in COMMON_ARGUMENTS if k in architecture}
        for key, value in dict(architecture.get("overrides") or {}).items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value  # JSON has no tuples
        if self.presets:
            kwargs["preset"] = architecture.get("preset") or self.presets[0]
        try:
            model = self.network_class()(**kwargs)
        except TypeError as error:
            raise ValueError(f"{self.name}: {error}") from None
        return model.eval()


NETWORKS: Dict[str, NetworkSpec] = {}


def register_network(spec: NetworkSpec) -> NetworkSpec:
    """Add (or replace) a network of the registry; returns ``spec``."""
    NETWORKS[spec.name] = spec
    return spec


def network_spec(name: Any, source: str = "architecture") -> NetworkSpec:
    """The registered network called ``name``.

    Raises:
        ValueError: an unknown name; the message names ``source`` and the known networks.
    """
    spec = NETWORKS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"{source}: unknown network {name!r}; this version knows {', '.join(NETWORKS)}")
    return spec


def build_network(architecture: Mapping[str, Any]) -> Any:
    """Instantiate the network an architecture record describes (see the module docstring), in eval mode."""
    return network_spec(architecture.get("network")).build(architecture)


register_network(
    NetworkSpec(
        name="MPUNet",
        target="MPUNetCore.networks.mpunet:MPUNet",
        description="MPU-Net: residual U-Net with position attention, attention gates, four heads",
        options=(
            "channels",
            "dropout",
            "elu_alpha",
            "attention_impl",
            "fusion",
            "heads",
            "patch_size",
            "embed_dim",
            "position_grid",
        ),
        presets=("released", "paper"),
    )
)
register_network(
    NetworkSpec(
        name="UNet",
        target="MPUNetCore.networks.unet:UNet",
        description="the paper's plain U-Net baseline (added skips, four heads)",
        options=("channels", "final_channels", "deep_supervision"),
    )
)
