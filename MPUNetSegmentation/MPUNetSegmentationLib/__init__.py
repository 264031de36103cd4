"""Qt-free, torch-free helpers of the MPUNetSegmentation Slicer module.

Everything here runs inside the 3D Slicer application and, through :mod:`.headless`, under plain Python
with the ``slicer-core`` wheel, so that it is tested in pytest against Slicer's real MRML.
"""
