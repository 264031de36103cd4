"""The sections of an experiment config: one frozen dataclass each, every key with its default and help.

A config file lists only what differs from these defaults. Optional keys (default None) are left
out of a file or written as `"none"`. Lists are tuples here and TOML arrays in a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from MPUNetCore.inference.settings import Blending, Precision
from MPUNetCore.networks.registry import NETWORKS

from .config_values import Section, key


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """[experiment]: the run's name, where its folder goes, the seed."""

    NAME = "experiment"
    name: str = key("run", "run name: the run folder is output_dir/name")
    output_dir: str = key("runs", "folder of the run folders (and of the default cache)")
    seed: int = key(0, "seed of the split, the sampling, augmentation and initialisation")
    description: str = key("", "free text, copied into the model card")


@dataclass(frozen=True)
class DataConfig(Section):
    """[data]: where the cases come from (a LiTS/MSD folder or generated phantoms) and how they are split."""

    NAME = "data"
    root: str = key("", "LiTS folder (volume-N/segmentation-N) or MSD task folder (imagesTr/labelsTr)")
    layout: str = key("auto", "data layout", ("auto", "lits", "msd"))
    task: str = key(
        "liver", "liver: 2 classes (liver incl. tumour); liver_tumor: 3 classes", ("liver", "liver_tumor")
    )
    split: Tuple[float, ...] = key((88.0, 22.0, 20.0), "relative sizes of the train/val/test split")
    split_file: str = key("", "reuse the split.json of another run (same cases, same split)")
    cache_dir: str = key("", "preprocessed-array cache (default: output_dir/cache)")
    min_slices: int = key(48, "drop scans with fewer slices around the liver (network space)")
    crop_margin: int = key(20, "slices kept above and below the liver (network space)")
    geometry_tolerance: float = key(
        1e-3, "largest origin/spacing difference (mm) of a valid image/label pair"
    )
    max_cases: int = key(0, "use only the first N cases by name (0: all)")
    phantom_cases: int = key(0, "generate N phantom cases into the run folder when root is empty")
    phantom_seed: int = key(0, "seed of the generated phantoms")
    phantom_shape: Tuple[int, ...] = key((), "phantom array size (z, y, x); empty: the generator's default")
    phantom_generator: str = key(
        "legacy",
        "anatomical: MPUNetCore.phantoms (anatomy, contrast phases, scanner protocols); "
        "legacy: the geometric MPUNetCore.phantom of the demo model 0.2.0",
        ("legacy", "anatomical"),
    )
    phantom_synthseg: float = key(0.0, "anatomical phantoms: fraction with randomised soft-tissue HU")
    phantom_slabs: float = key(0.0, "anatomical phantoms: fraction with only 3-12 slices")
    phantom_steatosis: float = key(0.0, "anatomical phantoms: extra probability of a fatty liver (-10-45 HU)")
    phantom_recess: Tuple[float, ...] = key(
        (), "anatomical phantoms: (lowest, highest) mm the lung's recesses reach down around the liver"
    )


@dataclass(frozen=True)
class PreprocessingConfig(Section):
    """[preprocessing]: HU window and scale, resampling to the network grid."""

    NAME = "preprocessing"
    hu_window: Tuple[float, ...] = key((-200.0, 200.0), "HU clip window (lower, upper)")
    scale: float = key(200.0, "divisor applied after clipping")
    inplane_factor: float = key(0.5, "in-plane resampling factor (0.5: 512 -> 256)")
    target_spacing: Optional[Tuple[float, ...]] = key(
        None, "in-plane (x, y) spacing in mm; overrides inplane_factor"
    )
    slice_spacing: Optional[float] = key(1.0, "slice spacing in mm ('none' keeps the slices)")
    antialias: bool = key(False, "Gaussian blur before downsampling (fine-pixel scans keep less noise)")


@dataclass(frozen=True)
class ModelConfig(Section):
    """[model]: the network (MPUNetCore.networks.registry) and its options; none: the network's default."""

    NAME = "model"
    network: str = key("MPUNet", "network (MPUNetCore.networks.registry)", tuple(NETWORKS))
    preset: str = key("released", "MPUNet preset", NETWORKS["MPUNet"].presets)
    channels: Optional[Tuple[int, ...]] = key(
        None, "encoder widths (MPUNet: 5, UNet: 4); none: the network's default"
    )
    dropout: Optional[float] = key(None, "MPUNet decoder dropout; none: the preset's")
    elu_alpha: Optional[float] = key(None, "MPUNet ELU alpha of the downsamplings; none: the preset's")
    fusion: Optional[str] = key(
        None, "MPUNet fusion of the four heads: mean (released), learned (paper); none: the preset's"
    )
    final_channels: Optional[int] = key(None, "UNet last decoder width; none: the default")


@dataclass(frozen=True)
class LossConfig(Section):
    """[loss]: the hybrid Tversky + deep-supervised cross-entropy loss (paper eq. 19)."""

    NAME = "loss"
    alpha: float = key(0.3, "Tversky weight of false positives")
    beta: float = key(0.7, "Tversky weight of false negatives")
    ce_weight: float = key(1.0, "lambda: weight of the deep-supervised cross-entropy")
    class_weights: str = key("none", "cross-entropy class weights", ("none", "balanced"))
    class_weight_values: Tuple[float, ...] = key(
        (), "cross-entropy weight per class, background first (overrides class_weights)"
    )
    tversky_on: str = key(
        "auto",
        "auto: the network's own prediction (mean of the heads, or the last output)",
        ("auto", "mean", "last", "each"),
    )
    include_background: bool = key(False, "include the background in the Tversky average")
    smooth: float = key(1e-5, "Tversky smoothing (numerator and denominator)")
    batch: bool = key(False, "Tversky over the whole batch instead of per patch")


@dataclass(frozen=True)
class TrainConfig(Section):
    """[train]: epochs, patches, optimiser and schedule, precision, device, validation cadence."""

    NAME = "train"
    epochs: int = key(600, "number of epochs")
    batch_size: int = key(1, "patches per step and process")
    patch: Tuple[int, ...] = key((48, 256, 256), "training patch (D, H, W) in network voxels")
    samples_per_epoch: int = key(0, "patches per epoch (0: one per training case)")
    foreground_prob: float = key(0.5, "probability that a patch is centred on a foreground voxel")
    tumor_prob: float = key(0.5, "liver_tumor: share of those foreground patches centred on a tumour")
    optimizer: str = key("adam", "optimiser", ("adam", "adamw", "sgd"))
    lr: float = key(1e-4, "initial learning rate")
    weight_decay: float = key(0.0, "weight decay")
    scheduler: str = key(
        "step", "learning-rate schedule, stepped per epoch", ("step", "cosine", "poly", "none")
    )
    step_size: int = key(100, "step scheduler: epochs between decays")
    gamma: float = key(0.5, "step scheduler: decay factor")
    grad_clip: float = key(12.0, "gradient-norm clipping (0: off)")
    amp: str = key(
        "auto", "autocast: auto = bfloat16/float16 on CUDA, float32 on CPU", tuple(p.value for p in Precision)
    )
    device: str = key("auto", "auto, cpu, cuda, cuda:N")
    channels_last: bool = key(False, "channels-last memory format (see benchmarks/bench_train.py)")
    workers: int = key(0, "data-loader worker processes")
    threads: int = key(0, "torch CPU threads (0: torch's default)")
    val_every: int = key(1, "validate every N epochs (and after the last)")
    best_metric: str = key("liver_dice", "validation metric that picks the best model (<class>_<metric>)")
    deterministic: bool = key(False, "deterministic cuDNN algorithms (slower on GPU)")


@dataclass(frozen=True)
class AugmentConfig(Section):
    """[augment]: flips, in-plane rotations and intensity changes of the training patches."""

    NAME = "augment"
    flip_axes: Tuple[int, ...] = key((0, 1, 2), "array axes (z, y, x) that may be flipped")
    flip_prob: float = key(0.5, "probability of a flip, per axis")
    rotate_degrees: float = key(10.0, "largest in-plane rotation in degrees")
    rotate_prob: float = key(0.2, "probability of a rotation")
    intensity_prob: float = key(0.3, "probability of an intensity change")
    intensity_scale: float = key(0.1, "largest relative intensity scaling")
    intensity_shift: float = key(0.1, "largest intensity shift (network units)")
    noise_std: float = key(0.03, "largest Gaussian noise std (network units)")


@dataclass(frozen=True)
class InferenceConfig(Section):
    """[inference]: how validation and `evaluate` segment whole volumes (and what the card prescribes)."""

    NAME = "inference"
    window: Tuple[int, ...] = key((48, 256, 256), "sliding window (D, H, W); 0 = the full extent")
    overlap: float = key(0.25, "overlap of neighbouring windows")
    blending: str = key("gaussian", "window blending", tuple(b.value for b in Blending))
    batch_size: int = key(1, "windows per forward pass")
    postprocess: bool = key(True, "largest liver component, tumours inside the liver")
    tta: bool = key(False, "mirroring test-time augmentation in evaluate")
    max_val_cases: int = key(0, "validate on the first N validation cases only (0: all)")
