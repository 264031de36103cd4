"""MPUNetCore: the PyTorch library behind MPUNet for 3D Slicer.

Networks, losses, metrics, preprocessing, inference, checkpoints, volume I/O and synthetic phantoms.
Pure PyTorch/NumPy/SimpleITK: nothing here imports Slicer, VTK or Qt.
"""

__version__ = "0.1.0"
