"""Write an ONNX model to a file one weight at a time, so saving it costs no second copy of the weights.

Why: ``ModelProto.SerializeToString`` needs the whole model as a protobuf *and* as one bytes object,
on top of the torch weights it came from: the export's memory peak (docs/PERFORMANCE.md).

How: protobuf parsers merge a message that appears more than once on the wire (a singular embedded
message is merged, a repeated field is appended), which every conforming parser must do. So the
model is written as its head (everything but the graph's initializers) followed by one small
``ModelProto {graph {value_info, initializer}}`` per weight. Read back, it is the same model as one
``SerializeToString`` of it, up to the order of ``value_info`` entries, which carry no meaning.
The file stays one self-contained ``.onnx`` that ONNX Runtime and ``onnx.load`` read as usual.
"""

from __future__ import annotations

from typing import BinaryIO

import onnx
import onnx_ir as ir


def write_model(model: ir.Model, f: BinaryIO) -> None:
    """Serialise ``model`` to ``f``, holding at most one initializer's bytes at a time."""
    graph = model.graph
    weights = dict(graph.initializers)
    graph.initializers.clear()
    try:
        f.write(ir.serde.serialize_model(model).SerializeToString())
    finally:
        graph.initializers.update(weights)
    for value in weights.values():
        if value.const_value is None:  # the one-piece serialiser skips these too
            continue
        part = onnx.GraphProto()
        if value.shape is not None or value.type is not None or value.metadata_props or value.doc_string:
            ir.serde.serialize_value_into(part.value_info.add(), value)  # as the one-piece serialiser does
        value.const_value.name = value.name
        ir.serde.serialize_tensor_into(part.initializer.add(), from_=value.const_value)
        f.write(onnx.ModelProto(graph=part).SerializeToString())
