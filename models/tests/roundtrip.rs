use rsim_model::format::*;
use rsim_model::write::*;
use rsim_model::*;

pub fn tiny_model() -> Vec<u8> {
    let mut w = WeightsBuilder::default();
    let weights = w.tensor(1, DType::F32, &[2, 4], &[0u8; 32], Quant::None);
    let input = Tensor {
        id: 0,
        dtype: DType::F32,
        shape: Shape::new(&[1, 4]),
        storage: Storage::Arena { offset: 0 },
        quant: Quant::None,
    };
    let output = Tensor {
        id: 2,
        dtype: DType::F32,
        shape: Shape::new(&[1, 2]),
        storage: Storage::Arena { offset: 16 },
        quant: Quant::None,
    };
    let op = Op::FullyConnected { input, weights, bias: None, output, activation: Activation::Relu, requant: None };
    let info = ModelInfo {
        name: "tiny",
        class_names: "a\nb",
        input_spec: input_spec(1, 4, &[0.5], &[0.25]),
        input,
        output,
        arena_size: 24,
        op_count: 0,
        provenance: Provenance { method: "test", data: "", commit: "", metrics: "" },
    };
    encode(&info, &[op], &w.bytes, Some(TestVector { input: &[0; 16], output: &[0; 8] }))
}

#[test]
fn round_trip_and_classes() {
    let bytes = tiny_model();
    let m = Model::parse(&bytes).unwrap();
    assert_eq!(m.info.name, "tiny");
    assert_eq!(m.info.classes().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(m.info.op_count, 1);
    assert_eq!(m.ops().count(), 1);
    assert!(m.test_vector.is_some());
}

#[test]
fn header_bytes_are_exact() {
    let bytes = tiny_model();
    assert_eq!(&bytes[0..4], b"RSIM");
    assert_eq!(&bytes[4..8], &[1, 0, 32, 0]);
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, bytes.len());
    assert_eq!(u32::from_le_bytes(bytes[16..20].try_into().unwrap()), 4);
    assert_eq!(&bytes[20..32], &[0; 12]);
    // first section entry: META right after the 4-entry table
    assert_eq!(&bytes[32..48], &[1, 0, 0, 0, 96, 0, 0, 0, bytes[40], bytes[41], 0, 0, 0, 0, 0, 0]);
}

#[test]
fn errors_are_typed() {
    let bytes = tiny_model();
    assert_eq!(Model::parse(&bytes[..10]).unwrap_err(), ModelError::TooShort { len: 10 });
    let mut v = bytes.clone();
    v[4] = 9;
    assert_eq!(Model::parse(&v).unwrap_err(), ModelError::UnsupportedVersion { found: 9, supported: 1 });
    let mut v = bytes.clone();
    let n = v.len();
    v[n - 1] ^= 1;
    assert!(matches!(Model::parse(&v).unwrap_err(), ModelError::CrcMismatch { .. }));
    assert!(matches!(Model::parse(&bytes[..bytes.len() - 1]).unwrap_err(), ModelError::LengthMismatch { .. }));
}
