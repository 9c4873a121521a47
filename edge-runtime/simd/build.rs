//! Sets `rsim_arm_dsp` on Arm targets with the DSP extension (Cortex-M4/M7: `thumbv7em-*`), where
//! `cortex_m` (SMLAD / SXTAB16 assembly) is compiled. Stable rustc does not set
//! `target_feature = "dsp"` for these targets (the feature is unstable), so the target name decides;
//! an explicit `-C target-feature=+dsp` (nightly) on another Arm target enables it too. rsim-edge's
//! build script reads the decision back (`cargo::metadata`), so both crates always agree.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(rsim_arm_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let dsp_feature = features.split(',').any(|f| f == "dsp");
    let dsp = arch == "arm" && (target.starts_with("thumbv7em") || dsp_feature);
    if dsp {
        println!("cargo::rustc-cfg=rsim_arm_dsp");
    }
    println!("cargo::metadata=arm_dsp={}", if dsp { "1" } else { "0" });
}
