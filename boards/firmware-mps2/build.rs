//! Embeds the model and input named by `RSIM_FW_MODEL` / `RSIM_FW_INPUT`, validates them on the host,
//! sizes the static arena from the model header, and sets up cortex-m-rt's linker script.
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    // cortex-m-rt's link.x includes memory.x from the linker search path.
    fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=memory.x");

    let model = read_var("RSIM_FW_MODEL", "the .rsm model to embed");
    let input = read_var("RSIM_FW_INPUT", "raw input tensors (one or more, back to back) to run it on");

    // Refuse at build time what the firmware would refuse at run time: a clearer message, earlier.
    let parsed = rsim_model::Model::parse(&model)
        .unwrap_or_else(|e| fail(&format!("RSIM_FW_MODEL is not a valid .rsm model: {e}")));
    let want = parsed.info.input.byte_len().unwrap_or(0);
    if want == 0 || input.is_empty() || input.len() % want != 0 {
        fail(&format!("RSIM_FW_INPUT has {} bytes, not a whole number of {want}-byte input tensors", input.len()));
    }
    // Round up so the arena can start 16-byte aligned and still hold the whole plan.
    let arena = (parsed.info.arena_size as usize).div_ceil(16) * 16;

    fs::write(out.join("model.rsm"), &model).expect("write model.rsm into OUT_DIR");
    fs::write(out.join("input.bin"), &input).expect("write input.bin into OUT_DIR");
    fs::write(
        out.join("model_consts.rs"),
        format!("/// Planned arena bytes of the embedded model, rounded up to 16.\npub const ARENA_SIZE: usize = {arena};\n"),
    )
    .expect("write model_consts.rs into OUT_DIR");
}

fn read_var(var: &str, what: &str) -> Vec<u8> {
    println!("cargo:rerun-if-env-changed={var}");
    let Some(path) = env::var_os(var) else {
        fail(&format!("set {var} to the path of {what} (`cargo xtask test` does this)"));
    };
    let path = Path::new(&path);
    println!("cargo:rerun-if-changed={}", path.display());
    fs::read(path).unwrap_or_else(|e| fail(&format!("{var}={}: {e}", path.display())))
}

fn fail(msg: &str) -> ! {
    eprintln!("error: rsim-firmware-mps2: {msg}");
    std::process::exit(1);
}
