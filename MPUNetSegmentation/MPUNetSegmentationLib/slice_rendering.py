"""Render a slice view offscreen, with Slicer's own slice logic and segmentation displayable manager.

What a Slicer slice view draws is the slice logic's blended reslice of the volume layers (the image) plus
what the 2D displayable managers add on top (segmentation fills and outlines). This module puts both into
an offscreen VTK render window (EGL with Mesa llvmpipe where there is no display: set
``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` before VTK creates a window) and returns the pixels, so
screenshots of the review show exactly what the module's views show. It needs no Qt; inside the Slicer
application, use the views' own ``grab()`` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_DISPLAYABLE_MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D",)


def render_slice_view(slice_logic: Any, width: int = 512, height: int = 512) -> np.ndarray:
    """Render one slice view (its volumes and the segmentations shown in it) offscreen.

    Args:
        slice_logic: the view's ``vtkMRMLSliceLogic`` (e.g. from :func:`.review_views.slice_logic`).
        width: image width in pixels; the slice node's dimensions are set to it (the field of view keeps
            its width and gets the image's aspect ratio).
        height: image height in pixels.

    Returns:
        ``(height, width, 3)`` ``uint8`` RGB image, top row first.
    """
    import slicer
    import vtk
    from vtk.util import numpy_support

    slice_node = slice_logic.GetSliceNode()
    fov = slice_node.GetFieldOfView()
    slice_node.SetDimensions(int(width), int(height), 1)
    slice_node.SetFieldOfView(fov[0], fov[0] * height / width, fov[2])
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(int(width), int(height))
    window.SetNumberOfLayers(2)
    image_renderer, overlay_renderer = vtk.vtkRenderer(), vtk.vtkRenderer()
    image_renderer.SetLayer(0)
    overlay_renderer.SetLayer(1)
    window.AddRenderer(image_renderer)
    window.AddRenderer(overlay_renderer)
    interactor = vtk.vtkRenderWindowInteractor()  # displayable managers need one
    interactor.SetRenderWindow(window)
    mapper = vtk.vtkImageMapper()  # what Slicer's slice view shows: the logic's blended 8-bit image
    mapper.SetInputConnection(slice_logic.GetImageDataConnection())
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtk.vtkActor2D()
    actor.SetMapper(mapper)
    image_renderer.AddViewProp(actor)
    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(slicer.app.applicationLogic())
    for name in _DISPLAYABLE_MANAGERS:
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    group = factory.InstantiateDisplayableManagers(overlay_renderer)
    try:
        group.SetMRMLDisplayableNode(slice_node)
        window.Render()
        grabber = vtk.vtkWindowToImageFilter()
        grabber.SetInput(window)
        grabber.SetInputBufferTypeToRGB()
        grabber.ReadFrontBufferOff()
        grabber.Update()
        output = grabber.GetOutput()
        pixels = numpy_support.vtk_to_numpy(output.GetPointData().GetScalars())
        columns, rows, _ = output.GetDimensions()
        image = pixels.reshape(rows, columns, -1)[::-1, :, :3].copy()
    finally:
        group.SetMRMLDisplayableNode(None)
        window.Finalize()
    return image
