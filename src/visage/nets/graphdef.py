"""Just enough of TensorFlow's GraphDef message to read the constants of a frozen graph, with plain protobuf.

The FaceNet weights ship as a frozen ``GraphDef``. Reading one needs only its message layout,
not TensorFlow or TensorBoard: the few fields used here are declared below (field numbers as in
TensorFlow's ``graph.proto``, ``node_def.proto``, ``attr_value.proto``, ``tensor.proto`` and
``tensor_shape.proto``), and protobuf skips every field that is not declared.
"""

from __future__ import annotations

import functools

#: ``DataType.DT_FLOAT`` in TensorFlow's ``types.proto``.
DT_FLOAT = 1
_PACKAGE = "visage.graphdef"


def _field(message, name: str, number: int, kind: str, *, repeated: bool = False, type_name: str = "") -> None:
    from google.protobuf import descriptor_pb2

    f = message.field.add(name=name, number=number)
    f.type = getattr(descriptor_pb2.FieldDescriptorProto, f"TYPE_{kind}")
    f.label = (descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if repeated
               else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    if type_name:
        f.type_name = f".{_PACKAGE}.{type_name}"


@functools.cache
def graph_def_class():
    """The ``GraphDef`` message class (node → name, op, attr → f, tensor → dtype, shape, values)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="visage_graphdef.proto", package=_PACKAGE, syntax="proto3")
    dim = file.message_type.add(name="Dim")
    _field(dim, "size", 1, "INT64")
    shape = file.message_type.add(name="TensorShapeProto")
    _field(shape, "dim", 2, "MESSAGE", repeated=True, type_name="Dim")
    tensor = file.message_type.add(name="TensorProto")
    _field(tensor, "dtype", 1, "INT32")  # an enum on the wire is a varint, as an int32 is
    _field(tensor, "tensor_shape", 2, "MESSAGE", type_name="TensorShapeProto")
    _field(tensor, "tensor_content", 4, "BYTES")
    _field(tensor, "float_val", 5, "FLOAT", repeated=True)
    attr = file.message_type.add(name="AttrValue")
    _field(attr, "f", 4, "FLOAT")
    _field(attr, "tensor", 8, "MESSAGE", type_name="TensorProto")
    node = file.message_type.add(name="NodeDef")
    _field(node, "name", 1, "STRING")
    _field(node, "op", 2, "STRING")
    entry = node.nested_type.add(name="AttrEntry")  # map<string, AttrValue> is a repeated entry message
    entry.options.map_entry = True
    _field(entry, "key", 1, "STRING")
    _field(entry, "value", 2, "MESSAGE", type_name="AttrValue")
    _field(node, "attr", 5, "MESSAGE", repeated=True, type_name="NodeDef.AttrEntry")
    graph = file.message_type.add(name="GraphDef")
    _field(graph, "node", 1, "MESSAGE", repeated=True, type_name="NodeDef")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.GraphDef"))
