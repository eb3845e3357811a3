"""Symbolic batch and image dimensions for an ONNX graph that declares fixed ones.

Some published detectors were exported with a fixed input shape (CenterFace:
10 x 3 x 32 x 32) although every layer is fully convolutional. onnxruntime
refuses other shapes, so the graph's declared input and output shapes are
rewritten to named dimensions before the session is built. Only those shape
fields are read and written (through a minimal protobuf schema of the few ONNX
messages involved); every other field of the file passes through untouched,
so the ``onnx`` package is not needed at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# (message, [(field, number, type, repeated, message type)]) of onnx.proto, field numbers as
# published; the rest of each message is kept as unknown fields.
_SCHEMA: tuple[tuple[str, tuple[tuple[str, int, int, bool, str], ...]], ...] = (
    ("ModelProto", (("graph", 7, 11, False, "GraphProto"),)),
    (
        "GraphProto",
        (("input", 11, 11, True, "ValueInfoProto"), ("output", 12, 11, True, "ValueInfoProto")),
    ),
    ("ValueInfoProto", (("name", 1, 9, False, ""), ("type", 2, 11, False, "TypeProto"))),
    ("TypeProto", (("tensor_type", 1, 11, False, "TensorTypeProto"),)),
    ("TensorTypeProto", (("shape", 2, 11, False, "TensorShapeProto"),)),
    ("TensorShapeProto", (("dim", 1, 11, True, "Dimension"),)),
    ("Dimension", (("dim_value", 1, 3, False, ""), ("dim_param", 2, 9, False, ""))),
)
_PACKAGE = "dan_onnx_dims"


class OnnxShapeError(ValueError):
    """The graph does not have the inputs or outputs whose shapes were to be rewritten."""


@functools.cache
def _model_class() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2"
    )
    for message_name, fields in _SCHEMA:
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated, type_name in fields:
            field = message.field.add(name=name, number=number, type=kind)
            field.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ModelProto"))


def with_symbolic_dims(model: bytes, dims: Mapping[str, Sequence[str | int]]) -> bytes:
    """The serialised ONNX ``model`` with the shapes of the named inputs / outputs replaced.

    ``dims`` maps a graph input or output name to its new shape: a name makes a
    dimension symbolic, an int fixes it.
    """
    parsed = _model_class().FromString(model)
    seen: set[str] = set()
    for value in [*parsed.graph.input, *parsed.graph.output]:
        if value.name not in dims:
            continue
        seen.add(value.name)
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        for dim in dims[value.name]:
            if isinstance(dim, int):
                shape.dim.add(dim_value=dim)
            else:
                shape.dim.add(dim_param=dim)
    missing = sorted(set(dims) - seen)
    if missing:
        raise OnnxShapeError(f"the graph has no input or output named {', '.join(missing)}")
    return bytes(parsed.SerializeToString())
