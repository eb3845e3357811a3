"""Benchmarks (not tests): ``python -m bench.load`` measures the align service under load.

Also ``bench.engines`` (raw-engine speed of model files), ``bench.detectors`` and
``bench.detector_accuracy`` (face detection), ``bench.service_accuracy`` (the service against
the evaluation command) and ``bench.calibrate_detector``. Shared by them and by the tests:
``bench.serving`` (the one helper that runs the service as a process) and ``bench.samples``
(300-W faces with their boxes, through ``training.dataset``). Data defaults to
``training.paths.DEFAULT_DATA_ROOT``, found from the checkout, so they run from any folder.
"""
