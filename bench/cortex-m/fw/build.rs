//! Embeds the model (`RSIM_CM_MODEL`, the .rsm that bench/cortex-m/gen converted) and one input
//! tensor (`RSIM_CM_INPUT`), and puts memory-an386.x (QEMU mps2-an386) on the linker path as memory.x.
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // cortex-m-rt's link.x includes memory.x from the linker search path.
    fs::copy("memory-an386.x", out.join("memory.x")).expect("copy memory.x into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg=-Tlink.x");
    println!("cargo:rerun-if-changed=memory-an386.x");
    for (var, file) in [("RSIM_CM_MODEL", "model.rsm"), ("RSIM_CM_INPUT", "input.bin")] {
        println!("cargo:rerun-if-env-changed={var}");
        let Some(path) = env::var_os(var).filter(|p| !p.is_empty()) else {
            eprintln!("error: set {var} (bench/cortex-m/run.sh does)");
            std::process::exit(1);
        };
        println!("cargo:rerun-if-changed={}", PathBuf::from(&path).display());
        let bytes = fs::read(&path).unwrap_or_else(|e| {
            eprintln!("error: {var}={}: {e}", PathBuf::from(&path).display());
            std::process::exit(1)
        });
        fs::write(out.join(file), bytes).expect("write into OUT_DIR");
    }
}
