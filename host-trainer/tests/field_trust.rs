//! `rsim keygen/sign/verify`, run as the user runs them: keygen → sign → verify, and tampered,
//! truncated, wrong-key, unsigned and rolled-back images refused with their reason. The same
//! library functions back `rsim-field`, the boards-only binary.
use rsim_model::format::TestVector;
use rsim_model::write::{encode, input_spec};
use rsim_model::*;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rsim");
const NAME: &str = "rsim";

/// A valid one-op int8 model (a Reshape, so its test vector's output equals its input).
#[allow(non_snake_case)]
fn MODEL() -> Vec<u8> {
    let t = |id| Tensor {
        id,
        dtype: DType::I8,
        shape: Shape::new(&[1, 4]),
        storage: Storage::Arena { offset: 0 },
        quant: Quant::PerTensor { scale: 0.1, zero_point: 0 },
    };
    let info = ModelInfo {
        name: "echo",
        class_names: "a\nb\nc\nd",
        input_spec: input_spec(1, 1, &[0.0; 4], &[1.0; 4]),
        input: t(0),
        output: t(1),
        arena_size: 64,
        op_count: 1,
        provenance: Provenance { method: "test", data: "none", commit: "0", metrics: "" },
    };
    let io = [1u8, 2, 3, 4];
    encode(
        &info,
        &[Op::Reshape { input: t(0), output: t(1) }],
        &[7u8; 300],
        Some(TestVector { input: &io, output: &io }),
    )
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN).args(args).output().expect("run the binary");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// keygen → sign → verify, and every kind of bad image refused with its reason, by the user's commands.
#[test]
fn keygen_sign_verify_and_refusals() {
    let dir = std::env::temp_dir().join(format!("rsim-trust-cli-{}-{}", NAME, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (k, k2) = (dir.join("k"), dir.join("other"));
    let (ok, out, err) = run(&["keygen", "--out", s(&k)]);
    assert!(ok, "{out}{err}");
    let secret = std::fs::read_to_string(dir.join("k.key")).unwrap();
    assert_eq!(secret.trim().len(), 64);
    assert!(!out.contains(secret.trim()) && !err.contains(secret.trim()), "the secret key was printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("k.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "secret key file mode {mode:o}");
    }
    let (ok, _, err) = run(&["keygen", "--out", s(&k)]);
    assert!(!ok && err.contains("exists"), "keygen must not overwrite a key: {err}");
    assert!(run(&["keygen", "--out", s(&k2)]).0);

    let model = dir.join("m.rsm");
    std::fs::write(&model, MODEL()).unwrap();
    let signed = dir.join("m.signed.rsm");
    let (ok, out, err) =
        run(&["sign", "--model", s(&model), "--key", s(&dir.join("k.key")), "--version", "3", "--out", s(&signed)]);
    assert!(ok && out.contains("version 3"), "{out}{err}");
    assert!(!out.contains(secret.trim()));
    let pubk = dir.join("k.pub");
    let verify = |p: &Path, key: &Path, extra: &[&str]| {
        let mut a = vec!["verify", "--model", s(p), "--pub", s(key)];
        a.extend_from_slice(extra);
        run(&a)
    };
    let (ok, out, err) = verify(&signed, &pubk, &[]);
    assert!(ok && out.contains("signature ok, model version 3"), "{out}{err}");
    // Several trusted keys: the right one among them verifies.
    let (ok, out, err) = run(&["verify", "--model", s(&signed), "--pub", s(&dir.join("other.pub")), "--pub", s(&pubk)]);
    assert!(ok, "{out}{err}");

    let bytes = std::fs::read(&signed).unwrap();
    let mut refused = 0;
    let positions = [0, 8, 40, bytes.len() / 2, bytes.len() - 80, bytes.len() - 70, bytes.len() - 1];
    for (i, at) in positions.iter().enumerate() {
        let mut bad = bytes.clone();
        bad[*at] ^= 0x10;
        let p = dir.join(format!("tampered{i}.rsm"));
        std::fs::write(&p, &bad).unwrap();
        let (ok, out, err) = verify(&p, &pubk, &[]);
        assert!(!ok && err.contains("refused"), "tampered byte {at} passed: {out}{err}");
        refused += 1;
    }
    let trunc = dir.join("trunc.rsm");
    std::fs::write(&trunc, &bytes[..bytes.len() - 10]).unwrap();
    let (ok, _, err) = verify(&trunc, &pubk, &[]);
    assert!(!ok && err.contains("truncated"), "{err}");
    let (ok, _, err) = verify(&signed, &dir.join("other.pub"), &[]);
    assert!(!ok && err.contains("does not verify"), "wrong key: {err}");
    let (ok, _, err) = verify(&model, &pubk, &[]);
    assert!(!ok && err.contains("not signed"), "unsigned: {err}");
    let (ok, _, err) = verify(&signed, &pubk, &["--min-version", "4"]);
    assert!(!ok && err.contains("rollback"), "older than the counter: {err}");
    // A signer-allowed downgrade passes only where the verifier allows downgrades.
    let down = dir.join("down.rsm");
    let (ok, _, err) = run(&[
        "sign",
        "--model",
        s(&model),
        "--key",
        s(&dir.join("k.key")),
        "--version",
        "1",
        "--allow-downgrade",
        "--out",
        s(&down),
    ]);
    assert!(ok, "{err}");
    assert!(!verify(&down, &pubk, &["--min-version", "4"]).0);
    assert!(verify(&down, &pubk, &["--min-version", "4", "--allow-downgrade"]).0);
    println!(
        "{NAME} CLI: {refused}/{} tampered refused; truncated, wrong key, unsigned, rollback refused",
        positions.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
