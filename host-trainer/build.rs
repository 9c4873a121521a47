//! Link-time fixes that tch's own build.rs applies to tch but not to crates that depend on it.
//!
//! Without `--no-as-needed` the linker drops libtorch_cuda (nothing references it by symbol), and
//! `Cuda::is_available()` then silently reports false (LaurentMazare/tch-rs#907, #980).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(rsim_no_autocast_shim)");
    // Set by torch-sys (links = "tch") for its direct dependents, only with the `train` feature.
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else { return };
    let lib = std::path::PathBuf::from(lib);
    // bf16 autocast shim (csrc/autocast.cpp) against the same libtorch's headers.
    println!("cargo:rerun-if-changed=csrc/autocast.cpp");
    if let Some(include) = lib.parent().map(|p| p.join("include")).filter(|i| i.join("c10").exists()) {
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file("csrc/autocast.cpp")
            .include(include)
            .warnings(false)
            .compile("rsim_autocast");
    } else {
        println!("cargo:warning=libtorch headers not found next to {}; bf16 autocast is unavailable", lib.display());
        println!("cargo:rustc-cfg=rsim_no_autocast_shim");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os != "linux" {
        return;
    }
    // rpath so `rsim` runs without LD_LIBRARY_PATH on the machine it was built on.
    println!("cargo:rustc-link-arg=-Wl,-rpath={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
}
