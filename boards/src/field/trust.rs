//! `keygen`, `sign`, `verify`: Ed25519 keys and signed images (docs/FORMAT.md "Signed images").
//!
//! Key files are text: 64 hex digits and a newline. The secret key file holds the 32-byte Ed25519
//! seed and is created with mode 0600 through a temporary file and a rename; no command prints it.
//! The public key file holds the 32-byte public key: that is what a board's firmware or agent config
//! lists. Commands print a key's fingerprint (the first 8 bytes of SHA-256 of the public key), never
//! a secret.

use crate::flash::sign::{self, Image, SignError, ENVELOPE_LEN, FLAG_DOWNGRADE};
use clap::Args;
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Generate an Ed25519 signing key pair for models.
#[derive(Args, Clone, Debug)]
pub struct KeygenArgs {
    /// Path prefix of the key pair: writes PREFIX.key (secret, mode 0600) and PREFIX.pub (public).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace existing key files (otherwise an existing file is an error).
    #[arg(long)]
    pub force: bool,
}

/// Sign a .rsm model: append the signature envelope (model version, flags, Ed25519 signature).
#[derive(Args, Clone, Debug)]
pub struct SignArgs {
    /// The unsigned .rsm model.
    #[arg(long)]
    pub model: PathBuf,
    /// Secret key file written by `keygen` (PREFIX.key).
    #[arg(long)]
    pub key: PathBuf,
    /// Monotonic model version: boards refuse a version below their security counter.
    #[arg(long)]
    pub version: u32,
    /// Let boards whose config allows signed downgrades install this image below their counter.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Where to write the signed image (written through a temporary file and a rename).
    #[arg(long)]
    pub out: PathBuf,
}

/// Check a signed model as a board would: signature, envelope, version, model decode.
#[derive(Args, Clone, Debug)]
pub struct VerifyArgs {
    /// The signed image to check.
    #[arg(long)]
    pub model: PathBuf,
    /// Public key file(s) (PREFIX.pub) the board trusts; repeat for several keys.
    #[arg(long = "pub", required = true)]
    pub keys: Vec<PathBuf>,
    /// The board's security counter: a lower model version is refused as a rollback.
    #[arg(long, default_value_t = 0)]
    pub min_version: u32,
    /// Accept a downgrade below --min-version when the image's signer allowed it.
    #[arg(long)]
    pub allow_downgrade: bool,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// First 8 bytes of SHA-256 of a public key, in hex: how commands name a key.
pub fn fingerprint(public: &[u8; 32]) -> String {
    hex(&Sha256::digest(public)[..8])
}

/// Reads a key file (64 hex digits, surrounding whitespace ignored). Errors never quote the content.
pub fn read_key(path: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let t = text.trim();
    let bad = || format!("{} is not a key file (expected 64 hex digits)", path.display());
    if t.len() != 64 || !t.is_ascii() {
        return Err(bad());
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(k)
}

/// Writes `bytes` to `path` through a temporary file created with `mode` and a rename.
fn write_private(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), String> {
    if path.exists() && !force {
        return Err(format!("{} exists; pass --force to replace it", path.display()));
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let res = (|| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = o.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    PathBuf::from(s)
}

/// `keygen`: returns the public key.
pub fn run_keygen(args: &KeygenArgs) -> Result<[u8; 32], String> {
    let (secret_path, public_path) = (with_ext(&args.out, ".key"), with_ext(&args.out, ".pub"));
    for p in [&secret_path, &public_path] {
        if p.exists() && !args.force {
            return Err(format!("{} exists; pass --force to replace it", p.display()));
        }
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no random source: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key().to_bytes();
    let mut text = hex(&seed).into_bytes();
    text.push(b'\n');
    seed.fill(0);
    let r = write_private(&secret_path, &text, 0o600, args.force);
    text.fill(0);
    r?;
    write_private(&public_path, format!("{}\n", hex(&public)).as_bytes(), 0o644, args.force)?;
    println!(
        "keygen: secret key {} (mode 0600, keep it off boards), public key {} (fingerprint {})",
        secret_path.display(),
        public_path.display(),
        fingerprint(&public)
    );
    Ok(public)
}

/// Signs an unsigned `.rsm` (checked to decode): returns the signed image.
pub fn sign_image(rsm: &[u8], seed: &[u8; 32], version: u32, flags: u16) -> Result<Vec<u8>, String> {
    match sign::split(rsm) {
        Ok(Image::Unsigned(_)) => {}
        Ok(Image::Signed { .. }) => return Err("the model is already signed".into()),
        Err(e) => return Err(e.to_string()),
    }
    rsim_model::Model::parse(rsm).map_err(|e| format!("not a valid model: {e}"))?;
    let key = SigningKey::from_bytes(seed);
    let mut out = Vec::with_capacity(rsm.len() + ENVELOPE_LEN);
    out.extend_from_slice(rsm);
    out.extend_from_slice(&sign::envelope_head(rsm.len() as u32, version, flags));
    let sig = key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    Ok(out)
}

/// `sign`: returns the signed image's length.
pub fn run_sign(args: &SignArgs) -> Result<usize, String> {
    let rsm = std::fs::read(&args.model).map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
    let mut seed = read_key(&args.key)?;
    let flags = if args.allow_downgrade { FLAG_DOWNGRADE } else { 0 };
    let signed = sign_image(&rsm, &seed, args.version, flags).map_err(|e| format!("{}: {e}", args.model.display()));
    let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    seed.fill(0);
    let signed = signed?;
    rsim_model::write::write_atomic(&args.out, &signed)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!(
        "sign: {} signed as version {}{} with key {}: {} ({} bytes)",
        args.model.display(),
        args.version,
        if args.allow_downgrade { " (downgrade allowed)" } else { "" },
        fingerprint(&public),
        args.out.display(),
        signed.len()
    );
    Ok(signed.len())
}

/// `verify`: the board's own check ([`sign::check`]) plus a model decode. Ok: the model version.
pub fn run_verify(args: &VerifyArgs) -> Result<u32, String> {
    let image = std::fs::read(&args.model).map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
    let keys = args.keys.iter().map(|p| read_key(p)).collect::<Result<Vec<_>, _>>()?;
    let checked = sign::check(&image, &keys, args.min_version, args.allow_downgrade)
        .map_err(|e: SignError| format!("{}: refused: {e}", args.model.display()))?;
    rsim_model::Model::parse(checked.rsm)
        .map_err(|e| format!("{}: signature ok but the model does not decode: {e}", args.model.display()))?;
    let key = checked.key.and_then(|i| keys.get(i)).map(fingerprint).unwrap_or_default();
    println!("verify: {}: signature ok, model version {}, key {key}", args.model.display(), checked.version);
    Ok(checked.version)
}
