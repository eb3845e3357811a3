"""The Deep Alignment Network (Kowalski et al., 2017) and its landmark geometry.

``model.landmarks`` and ``model.geometry`` are numpy-only and shared with the
service; everything else here needs torch. The released ONNX model files live
in this folder too (see ``MODEL_CARD.md``).
"""
