//! Arbitrary bytes through `Model::parse`, `Engine::new` and `invoke`: each must return, never panic
//! or read out of bounds (libFuzzer + AddressSanitizer report both).
//!
//! The first byte is a control byte: if its low bit is set, the harness rewrites the header CRC of the
//! rest before parsing, so mutations reach the validator and the kernels instead of dying at the
//! checksum. Seed with valid models (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsim_edge::Engine;
use rsim_model::Model;

/// Larger planned arenas are refused by giving the engine less (it must say ArenaTooSmall).
const ARENA_CAP: usize = 1 << 22;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    // Copy into a 16-byte-aligned buffer, as model bytes sit in flash.
    let mut words = vec![0u128; rest.len().div_ceil(16)];
    let bytes = &mut bytemuck_bytes(&mut words)[..rest.len()];
    bytes.copy_from_slice(rest);
    if control & 1 == 1 && bytes.len() >= 32 {
        let crc = crc32fast::hash(&bytes[32..]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    }
    let bytes = &*bytes;
    let Ok(model) = Model::parse(bytes) else { return };
    // The whole arena (activations + prepared ops + fast-kernel data), so hostile bytes also reach
    // kernel planning and packing; the control byte's bit 1 picks lean mode (activations only).
    let lean = control & 2 == 2;
    let opts = rsim_edge::Options { lean, ..Default::default() };
    let need = rsim_edge::required_arena_with(bytes, &opts).unwrap_or(model.info.arena_size as usize).min(ARENA_CAP);
    let mut arena_words = vec![0u128; need.div_ceil(16)];
    let arena = &mut bytemuck_bytes(&mut arena_words)[..need];
    let Ok(mut engine) = Engine::with_options(bytes, arena, opts) else { return };
    for (i, b) in engine.input_mut().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(control);
    }
    if engine.invoke().is_ok() {
        let _ = engine.output();
    }
});

fn bytemuck_bytes(words: &mut [u128]) -> &mut [u8] {
    // SAFETY: u128 has no padding, every byte pattern is a valid u8, and the length is exact.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 16) }
}
