//! Arbitrary bytes through the link decoder (`FrameReader`: COBS, CRC32, postcard) that the board,
//! `rsim flash` and `rsim ground` share: every byte sequence must decode or be counted as a bad
//! frame, never panic. Decoded messages are re-encoded and must decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsim_boards::wire::{encode, FrameReader, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let mut reader: FrameReader = FrameReader::new();
    let mut out = [0u8; MAX_FRAME];
    for &b in data {
        if let Some(Ok(msg)) = reader.push(b) {
            let Ok(n) = encode(&msg, &mut out) else { continue };
            let mut again: FrameReader = FrameReader::new();
            let decoded = out[..n].iter().find_map(|&b| again.push(b).map(|r| r.map(|m| format!("{m:?}"))));
            assert_eq!(decoded, Some(Ok(format!("{msg:?}"))), "re-encoded message does not decode the same");
        }
    }
});
