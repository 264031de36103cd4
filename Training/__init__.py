"""Training: reproduce the MPU-Net paper's LiTS experiments from the command line.

`python -m Training train|evaluate|report|export` (console script `mpunet-train`); one TOML config per
experiment in `Training/configs/`. Nothing here imports Slicer.
"""
