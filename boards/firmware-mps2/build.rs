//! Embeds the model (`RSIM_FW_MODEL`) and what to classify (not with the `receiver` feature, whose
//! firmware reads its model from flash and its frames from the host), validates both on the host, sizes the
//! static arena from the model header, writes the loop settings and picks the board's memory map.
//!
//! What to classify, first match wins:
//! - `RSIM_FW_FRAMES` + `RSIM_FW_FRAME=WxHxC`: u8 HWC camera frames back to back; the loop tiles
//!   them (`RSIM_FW_TILE`, default the model's input width; `RSIM_FW_STRIDE`, default the tile)
//!   and preprocesses each tile per the model's input spec.
//! - `RSIM_FW_INPUT`: ready input tensors back to back, each classified whole as is.
//! - neither: the model's embedded test vector input.
//!
//! Also: `RSIM_FW_TOP_K` (1..=5, default 5), `RSIM_FW_DEADLINE_MS` (default 10000),
//! `RSIM_FW_REPEAT` (passes over the frames, default 1; benchmarks use more), `RSIM_FW_HEX=0`
//! (no RSIM_OUTPUT lines over semihosting: they trap to the host and slow the loop).
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // cortex-m-rt's link.x includes memory.x from the linker search path. No file of that name sits
    // in the package root: the linker would find it there first, whatever the board.
    let memory = if env::var_os("CARGO_FEATURE_AN547").is_some() { "memory-an547.x" } else { "memory-an386.x" };
    fs::copy(memory, out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=memory-an386.x");
    println!("cargo:rerun-if-changed=memory-an547.x");

    // The receiver firmware boots whatever model its flash holds and takes new ones over the UART:
    // nothing to embed, one build for every model.
    if env::var_os("CARGO_FEATURE_RECEIVER").is_some() {
        write_keys(&out);
        return;
    }
    let model = read_var("RSIM_FW_MODEL", "the .rsm model to embed").unwrap_or_else(|| {
        fail("set RSIM_FW_MODEL to the path of the .rsm model to embed (`cargo xtask test` does this)")
    });
    // Refuse at build time what the firmware would refuse at run time: a clearer message, earlier.
    let parsed = rsim_model::Model::parse(&model)
        .unwrap_or_else(|e| fail(&format!("RSIM_FW_MODEL is not a valid .rsm model: {e}")));
    let tensor = parsed.info.input.byte_len().unwrap_or(0);
    if tensor == 0 {
        fail("the model's input tensor is empty");
    }
    let model_w = parsed.info.input_spec.width;

    let frames = read_var("RSIM_FW_FRAMES", "u8 HWC frames back to back");
    let (frames, (w, h, c), raw) = if let Some(frames) = frames {
        let dims = env_str("RSIM_FW_FRAME").unwrap_or_else(|| fail("RSIM_FW_FRAMES needs RSIM_FW_FRAME=WxHxC"));
        let d: Vec<u32> = dims.split('x').map(|v| v.trim().parse().unwrap_or(0)).collect();
        let [w, h, c] = d[..] else { fail(&format!("RSIM_FW_FRAME={dims:?} is not WxHxC")) };
        let len = (w * h * c) as usize;
        if len == 0 || frames.is_empty() || frames.len() % len != 0 {
            fail(&format!("RSIM_FW_FRAMES has {} bytes, not a whole number of {w}x{h}x{c} frames", frames.len()));
        }
        (frames, (w, h, c), false)
    } else if let Some(input) = read_var("RSIM_FW_INPUT", "raw input tensors back to back") {
        if input.is_empty() || input.len() % tensor != 0 {
            fail(&format!(
                "RSIM_FW_INPUT has {} bytes, not a whole number of {tensor}-byte input tensors",
                input.len()
            ));
        }
        (input, (tensor as u32, 1, 1), true)
    } else {
        let tv = parsed.test_vector.as_ref().unwrap_or_else(|| {
            fail("no RSIM_FW_FRAMES or RSIM_FW_INPUT given and the model has no test vector to run")
        });
        (tv.input.to_vec(), (tensor as u32, 1, 1), true)
    };
    // A raw tensor frame is one row, narrower than any tile of 2+: the loop classifies it whole.
    let tile = env_u32("RSIM_FW_TILE").unwrap_or(if raw { 2 } else { model_w.max(1) });
    let stride = env_u32("RSIM_FW_STRIDE").unwrap_or(tile);
    let top_k = env_u32("RSIM_FW_TOP_K").unwrap_or(5).clamp(1, 5);
    let deadline_ms = env_u32("RSIM_FW_DEADLINE_MS").unwrap_or(10_000);
    let repeat = env_u32("RSIM_FW_REPEAT").unwrap_or(1).max(1);
    let hex = env_u32("RSIM_FW_HEX").unwrap_or(1) != 0;
    // Round up so the arena can start 16-byte aligned and still hold the whole plan.
    let arena = (parsed.info.arena_size as usize).div_ceil(16) * 16;
    let tile_buf = if raw { 0 } else { (tile * tile * c) as usize };

    fs::write(out.join("model.rsm"), &model).expect("write model.rsm into OUT_DIR");
    fs::write(out.join("frames.bin"), &frames).expect("write frames.bin into OUT_DIR");
    let consts = format!(
        "/// Planned arena bytes of the embedded model, rounded up to 16.\n\
         pub const ARENA_SIZE: usize = {arena};\n\
         /// Embedded frames: width, height, channels; RAW_TENSORS when they are input tensors.\n\
         pub const FRAME_W: u32 = {w};\npub const FRAME_H: u32 = {h};\npub const FRAME_C: u32 = {c};\n\
         pub const RAW_TENSORS: bool = {raw};\n\
         pub const FRAME_LEN: usize = {};\n\
         pub const TILE: u32 = {tile};\npub const STRIDE: u32 = {stride};\npub const TILE_BUF: usize = {tile_buf};\n\
         pub const TOP_K: u8 = {top_k};\npub const DEADLINE_US: u64 = {deadline_ms} * 1000;\n\
         pub const REPEAT: u32 = {repeat};\n\
         /// Print each output tensor as an RSIM_OUTPUT line over semihosting.\n\
         pub const HEX_LINES: bool = {hex};\n",
        (w * h * c) as usize
    );
    fs::write(out.join("model_consts.rs"), consts).expect("write model_consts.rs into OUT_DIR");
    for v in [
        "RSIM_FW_FRAME",
        "RSIM_FW_TILE",
        "RSIM_FW_STRIDE",
        "RSIM_FW_TOP_K",
        "RSIM_FW_DEADLINE_MS",
        "RSIM_FW_REPEAT",
        "RSIM_FW_HEX",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
}

/// `RSIM_FW_KEYS`: the receiver's trusted Ed25519 public keys, `.pub` files (`rsim keygen`: 64 hex
/// digits) separated by `:`. None: the board accepts unsigned models (development boards).
fn write_keys(out: &Path) {
    println!("cargo:rerun-if-env-changed=RSIM_FW_KEYS");
    let mut keys = Vec::new();
    for path in env::var("RSIM_FW_KEYS").unwrap_or_default().split(':').filter(|p| !p.is_empty()) {
        println!("cargo:rerun-if-changed={path}");
        let text = fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("RSIM_FW_KEYS: {path}: {e}")));
        let hex = text.trim();
        let bytes: Option<Vec<u8>> = (hex.len() == 64)
            .then(|| (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect())
            .flatten();
        let key = bytes.unwrap_or_else(|| fail(&format!("RSIM_FW_KEYS: {path} is not a public key (64 hex digits)")));
        keys.push(format!("{key:?}"));
    }
    let text = format!(
        "/// Public keys the receiver trusts (RSIM_FW_KEYS at build time); empty: unsigned models accepted.\n\
         pub const KEYS: &[[u8; 32]] = &[{}];\n",
        keys.join(", ")
    );
    fs::write(out.join("keys.rs"), text).expect("write keys.rs into OUT_DIR");
}

fn env_str(var: &str) -> Option<String> {
    env::var(var).ok().filter(|s| !s.is_empty())
}

fn env_u32(var: &str) -> Option<u32> {
    env_str(var).map(|s| s.parse().unwrap_or_else(|_| fail(&format!("{var}={s:?} is not a whole number"))))
}

fn read_var(var: &str, what: &str) -> Option<Vec<u8>> {
    println!("cargo:rerun-if-env-changed={var}");
    let path = env::var_os(var).filter(|p| !p.is_empty())?;
    let path = Path::new(&path);
    println!("cargo:rerun-if-changed={}", path.display());
    Some(fs::read(path).unwrap_or_else(|e| fail(&format!("{var}={} ({what}): {e}", path.display()))))
}

fn fail(msg: &str) -> ! {
    eprintln!("error: rsim-firmware-mps2: {msg}");
    std::process::exit(1);
}
