"""Segment every CT of a folder with MPU-Net, headless: in 3D Slicer or in plain Python with slicer-core.

In 3D Slicer (arguments after ``--``)::

    Slicer --no-splash --no-main-window --python-script MPUNetSegmentation/Scripts/mpunet_batch.py \\
        -- --input CT_DIR --output OUT_DIR [--labels LABEL_DIR] [--model NAME|PATH] [--device auto]

In plain Python (``pip install slicer-core==5.13.31053.0 vtk==9.6.2`` plus the MPUNet requirements)::

    python MPUNetSegmentation/Scripts/mpunet_batch.py --input CT_DIR --output OUT_DIR [--labels LABEL_DIR]

Writes ``OUT_DIR/segmentations/<case>.seg.nrrd``, ``OUT_DIR/labelmaps/<case>.nii.gz``, ``OUT_DIR/metrics.csv``
(with ``--labels``) and ``OUT_DIR/mpunet_batch.log``. Exit code 0: all cases done; 1: a case failed (logged,
the others completed); 2: bad arguments. See ``MPUNetSegmentationLib/batch.py``.
"""

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]  # MPUNetSegmentation/, which holds MPUNetSegmentationLib
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def _exit(code: int) -> None:
    from MPUNetSegmentationLib.headless import is_real_slicer

    if is_real_slicer():  # the application keeps running after a script unless told to exit
        import slicer.util

        slicer.util.exit(code)
    sys.exit(code)


def _run() -> int:
    from MPUNetSegmentationLib.dependencies import ensure_mpunetcore_importable

    ensure_mpunetcore_importable()
    from MPUNetSegmentationLib.batch import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    try:
        exit_code = _run()
    except SystemExit as stop:  # argparse's usage errors
        exit_code = stop.code if isinstance(stop.code, int) else 2
    except BaseException as error:  # anything unexpected still ends the application with a failure code
        import traceback

        traceback.print_exc()
        print(f"mpunet_batch: error: {error}", file=sys.stderr)
        exit_code = 1
    _exit(exit_code)
