//! Test models and a self-test double shared by the boards tests.
#![allow(dead_code)]

use rsim_boards::flash::emu::RamFlash;
use rsim_boards::flash::{BoardLimits, Layout, SelfTest, Updater};
use rsim_model::format::TestVector;
use rsim_model::write::{encode, input_spec};
use rsim_model::*;
use sha2::{Digest, Sha256};

pub type Flash = RamFlash<4, 1024>;
pub type Dev = Updater<Flash, EchoSelfTest>;

/// A valid `.rsm` whose graph is one in-place Reshape of an int8 [1, n] tensor (so its output equals
/// its input), padded with `pad` bytes of seeded weights to reach a realistic image size.
/// `tv_output_ok = false` stores a test vector whose output differs from the input.
pub fn echo_model(n: u32, arena: u32, pad: usize, seed: u8, tv_output_ok: bool) -> Vec<u8> {
    let t = |id| Tensor {
        id,
        dtype: DType::I8,
        shape: Shape::new(&[1, n]),
        storage: Storage::Arena { offset: 0 },
        quant: Quant::PerTensor { scale: 0.1, zero_point: 0 },
    };
    let info = ModelInfo {
        name: "echo",
        class_names: "a\nb\nc\nd",
        input_spec: input_spec(1, 1, &[0.0; 4][..n.min(4) as usize], &[1.0; 4][..n.min(4) as usize]),
        input: t(0),
        output: t(1),
        arena_size: arena,
        op_count: 1,
        provenance: Provenance { method: "test", data: "none", commit: "0", metrics: "" },
    };
    let ops = [Op::Reshape { input: t(0), output: t(1) }];
    let weights: Vec<u8> = (0..pad).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let input: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect();
    let mut output = input.clone();
    if !tv_output_ok {
        output[0] ^= 1;
    }
    encode(&info, &ops, &weights, Some(TestVector { input: &input, output: &output }))
}

pub fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Self-test double for a Reshape-only model: the output must equal the input. It parses the model
/// itself and refuses any other graph, so a wrong test vector or a non-echo model fails.
#[derive(Default)]
pub struct EchoSelfTest {
    pub runs: u32,
}

impl SelfTest for EchoSelfTest {
    fn run(&mut self, model: &[u8], input: &[u8], expected: &[u8]) -> Result<(), &'static str> {
        self.runs += 1;
        let m = Model::parse(model).map_err(|_| "model does not parse")?;
        for op in m.ops() {
            if !matches!(op, Ok(Op::Reshape { .. })) {
                return Err("echo runtime runs only Reshape");
            }
        }
        if input == expected {
            Ok(())
        } else {
            Err("output differs from the test vector")
        }
    }
}

pub const LIMITS: BoardLimits =
    BoardLimits { max_arena: 64 * 1024, max_input_bytes: 4096, require_test_vector: true, max_macs: None };

/// A 1 KiB-page flash with two 32 KiB slots.
pub fn device() -> Dev {
    device_on(Flash::new(2 * 1024 + 2 * 32 * 1024))
}

pub fn device_on(flash: Flash) -> Dev {
    let layout = Layout::split(0, flash_len(&flash), 1024).unwrap();
    Updater::new(flash, layout, LIMITS, EchoSelfTest::default()).unwrap()
}

fn flash_len(f: &Flash) -> u32 {
    f.mem().len() as u32
}

/// Bytes of the model the board would boot now, if any.
pub fn booted_image(dev: &mut Dev) -> Option<Vec<u8>> {
    let b = dev.boot().ok()?;
    use rsim_boards::flash::MappedFlash;
    Some(dev.flash().mapped(b.offset, b.len)?.to_vec())
}
