//! Sets `rsim_arm_dsp` exactly where rsim-edge-simd compiled its Cortex-M4/M7 DSP module
//! (`rsim_edge_simd::cortex_m`, Armv7E-M targets; see that crate's build script), so that
//! `kernels::fast::cortex_m` (SMLAD int8 convolution) is compiled with it.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(rsim_arm_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_RSIM_EDGE_SIMD_ARM_DSP");
    if std::env::var("DEP_RSIM_EDGE_SIMD_ARM_DSP").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=rsim_arm_dsp");
    }
}
