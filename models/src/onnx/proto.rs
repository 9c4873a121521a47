//! Small constructors over tract-onnx's prost types (`tract_onnx::pb`).

use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};

pub fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

pub fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}

pub fn attr_float(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: v, ..Default::default() }
}

pub fn node(
    op: &str,
    name: String,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name,
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// An initializer holding `raw` little-endian bytes of `data_type`.
fn raw_tensor(name: &str, dims: Vec<i64>, data_type: DataType, raw_data: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto { dims, data_type: data_type as i32, name: name.into(), raw_data, ..Default::default() }
}

pub fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> pb::TensorProto {
    raw_tensor(name, dims.to_vec(), DataType::Float, data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

pub fn tensor_i64(name: &str, data: &[i64]) -> pb::TensorProto {
    raw_tensor(name, vec![data.len() as i64], DataType::Int64, data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

pub fn tensor_i8(name: &str, dims: &[i64], data: &[i8]) -> pb::TensorProto {
    raw_tensor(name, dims.to_vec(), DataType::Int8, data.iter().map(|&v| v as u8).collect())
}

pub fn tensor_i32(name: &str, dims: &[i64], data: &[i32]) -> pb::TensorProto {
    raw_tensor(name, dims.to_vec(), DataType::Int32, data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

pub fn value_info(name: &str, dims: &[i64], dtype: DataType) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = pb::TensorShapeProto {
        dim: dims.iter().map(|&d| Dimension { value: Some(Value::DimValue(d)), ..Default::default() }).collect(),
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: dtype as i32,
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
