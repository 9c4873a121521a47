//! Puts memory-an386.x (QEMU mps2-an386) on the linker path as memory.x for cortex-m-rt's link.x.
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory-an386.x", out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=memory-an386.x");
    println!("cargo:rerun-if-env-changed=RSIM_DSP_CASES");
    println!("cargo:rerun-if-env-changed=RSIM_DSP_SEED");
}
