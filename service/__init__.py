"""The align service: 68 facial landmarks over HTTP from an exported DAN ONNX file.

onnxruntime only (no torch). Start it with ``python -m service``; configure it
with ``DAN_*`` environment variables (see ``service.config.Settings``). The data
path: upload -> decode (``imaging``) -> face boxes (``initialisation``) -> crop
(``cropping``) -> batching queue (``batching``) -> ONNX (``engine``) ->
landmarks mapped back to the image. The grayscale rule, the crop and the
model file's ``dan.*`` metadata are training's own (``model.grayscale``,
``model.crop``, ``model.metadata``).
"""
