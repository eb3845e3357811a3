"""CenterFace box -> 300-W detector box (the model's box convention): fitted numbers.

Written by ``python -m bench.calibrate_detector``; do not edit by hand.
Fitted on the 300-W training images (afw, lfpw/trainset, helen/trainset):
2010 of 2012 annotated faces paired with a detection. Mean IoU with
the ``boxes.csv`` box: 0.708 before the mapping, 0.858 after.
"""

from service.detectors.calibration import BoxMapping

CENTERFACE_BOX_MAPPING = BoxMapping(
    dx=-0.017919,
    dy=0.111307,
    sw=1.011858,
    sh=0.789369,
)
