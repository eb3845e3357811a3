"""The Deep Alignment Network (Kowalski et al., 2017) and the input contract of its model files.

Torch-free (numpy, and OpenCV for the warp), shared by training, evaluation,
export, the service and the benchmarks: ``crop`` (a face box -> the crop
similarity -> the warped input crop, and landmarks back), ``grayscale`` (how
a decoded image becomes the gray input), ``metadata`` (the ``dan.*`` keys of
an exported file, one writer and one reader), ``geometry`` and ``landmarks``
(transforms and the iBUG 68-point scheme), ``arrays`` (array types) and
``config`` (the network's hyper-parameters). Everything else here (``dan``,
``stage`` and the connection layers) needs torch. The released ONNX model
files live in this folder too (see ``MODEL_CARD.md``).
"""
