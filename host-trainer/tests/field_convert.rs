//! `rsim convert --reference`: the user's command converts a full-int8 .tflite and checks every
//! reference output byte for byte on the edge runtime; one changed reference byte must fail it.
use std::path::Path;
use std::process::Command;

fn convert(tflite: &Path, out: &Path, reference: &Path) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rsim"))
        .arg("convert")
        .arg(tflite)
        .arg(out)
        .arg("--reference")
        .arg(reference)
        .output()
        .expect("run rsim");
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn convert_checks_reference_outputs_and_fails_on_one_changed_byte() {
    let Some(peer) = rsim_test_support::peer_model("mlperf-tiny-ic") else { return };
    let tflite = peer.join("pretrainedResnet_quant.tflite");
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = convert(&tflite, &dir.path().join("a.rsm"), &peer);
    assert!(ok, "{text}");
    let n = std::fs::read_dir(peer.join("inputs")).unwrap().count();
    assert!(text.contains(&format!("reference check: {n}/{n} outputs byte-identical")), "{text}");

    // A reference with one output byte changed: the command must fail and name the file.
    let bad = dir.path().join("bad");
    copy_dir(&peer.join("inputs"), &bad.join("inputs"));
    copy_dir(&peer.join("outputs"), &bad.join("outputs"));
    let victim = bad.join("outputs/007.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let (ok, text) = convert(&tflite, &dir.path().join("b.rsm"), &bad);
    assert!(!ok, "a changed reference byte passed:\n{text}");
    assert!(text.contains("007.bin") && text.contains(&format!("{}/{n}", n - 1)), "{text}");
}

/// `--max-macs`: a model over a board's compute budget is refused and nothing is written; under it
/// the command prints the count (ResNet-8: about 12.5 M multiply-accumulates).
#[test]
fn convert_refuses_a_model_over_the_compute_budget() {
    let Some(peer) = rsim_test_support::peer_model("mlperf-tiny-ic") else { return };
    let tflite = peer.join("pretrainedResnet_quant.tflite");
    let dir = tempfile::tempdir().unwrap();
    let run = |max: &str, out: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_rsim"))
            .arg("convert")
            .arg(&tflite)
            .arg(out)
            .args(["--max-macs", max])
            .output()
            .expect("run rsim");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let small = dir.path().join("small.rsm");
    let (ok, text) = run("1000000", &small);
    assert!(!ok && text.contains("over --max-macs 1000000") && text.contains("nothing written"), "{text}");
    assert!(!small.exists(), "a refused model was written");
    let fits = dir.path().join("fits.rsm");
    let (ok, text) = run("100000000", &fits);
    assert!(ok && fits.exists(), "{text}");
    let macs: u64 =
        text.split(" MACs per inference").next().and_then(|t| t.rsplit(' ').next()).unwrap().parse().unwrap();
    assert!((10_000_000..15_000_000).contains(&macs), "ResNet-8 MACs {macs}: {text}");
}
