//! `rsim data fetch`: download a dataset archive with resume, check its hashes, extract it, and
//! only then move it into place, so an interrupted or corrupt download never leaves a
//! half-written dataset where a run would read it.
//!
//! Layout on disk while working (for `dest` = `data/eurosat-rgb`):
//! `data/eurosat-rgb.zip.part` (download, resumable with HTTP Range), then
//! `data/.eurosat-rgb.extracting/` (extraction), then `data/eurosat-rgb/` (rename; done).
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A downloadable dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetSpec {
    pub name: &'static str,
    pub url: String,
    /// Lower-case hex SHA-256 of the archive, when confirmed.
    pub sha256: Option<String>,
    /// Lower-case hex MD5 of the archive (what torchvision publishes), when known.
    pub md5: Option<String>,
    /// Top-level folder inside the archive to unwrap (EuroSAT.zip holds `2750/<class>/...`).
    pub strip_top: Option<&'static str>,
    /// Lower-case hex [`content_sha256`] of the extracted dataset, when pinned: checked before the
    /// dataset is moved into place, so the images a run reads are exactly the ones pinned.
    pub content_sha256: Option<&'static str>,
    pub description: &'static str,
}

/// The datasets `rsim data fetch` knows.
///
/// EuroSAT RGB: the authors' archive named in the phelber/EuroSAT README (DFKI server), the one
/// torchvision's `EuroSAT` downloads, with torchvision's published MD5. Its SHA-256 could not
/// be confirmed from a primary source here, so the entry has none: compute it from a download
/// whose MD5 matches (`sha256sum EuroSAT.zip`) and put it in this table; until then the MD5 is
/// the check. `--sha256` on the command line supplies one for any URL.
///
/// The extracted images are pinned by SHA-256 ([`content_sha256`]): the digest of the 27,000 RGB
/// images as published (`sha256 of MANIFEST.sha256` in the dataset's SOURCE.md; the test
/// `eurosat_content_pin_matches_the_real_images` recomputes it from a local copy).
pub fn known_datasets() -> Vec<DatasetSpec> {
    vec![DatasetSpec {
        name: "eurosat-rgb",
        url: "https://madm.dfki.de/files/sentinel/EuroSAT.zip".into(),
        sha256: None,
        md5: Some("c8fa014336c82ac7804f0398fcb19387".into()),
        strip_top: Some("2750"),
        content_sha256: Some(EUROSAT_RGB_CONTENT_SHA256),
        description: "EuroSAT RGB: 27,000 Sentinel-2 64x64 JPEG tiles, 10 classes (Helber et al., MIT); ~90 MB",
    }]
}

/// [`content_sha256`] of EuroSAT RGB's 27,000 images.
pub const EUROSAT_RGB_CONTENT_SHA256: &str = "feefa5e365ffbf7cf1bf39f68dc5e96efc80f5234d9c1b91889277593b3627e1";

#[derive(Debug)]
pub enum FetchError {
    UnknownDataset(String),
    Http(String),
    Io(PathBuf, std::io::Error),
    HashMismatch { what: &'static str, expected: String, got: String },
    Archive(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::UnknownDataset(n) => {
                let names: Vec<_> = known_datasets().iter().map(|d| d.name).collect();
                write!(f, "unknown dataset {n:?}; known: {}", names.join(", "))
            }
            FetchError::Http(m) => write!(f, "download failed: {m}"),
            FetchError::Io(p, e) => write!(f, "I/O error on {}: {e}", p.display()),
            FetchError::HashMismatch { what, expected, got } => {
                write!(f, "{what} mismatch: expected {expected}, got {got}; the download was deleted")
            }
            FetchError::Archive(m) => write!(f, "cannot extract archive: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |e| FetchError::Io(p.to_path_buf(), e)
}

/// Downloads a known dataset by name into `dest` (the folder that will hold the classes).
pub fn download_dataset(name: &str, dest: &Path, progress: bool) -> Result<PathBuf, FetchError> {
    let spec =
        known_datasets().into_iter().find(|d| d.name == name).ok_or_else(|| FetchError::UnknownDataset(name.into()))?;
    fetch(&spec, dest, progress, 5)
}

fn sibling(dest: &Path, suffix: &str, hidden: bool) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dataset".into());
    let name = if hidden { format!(".{name}{suffix}") } else { format!("{name}{suffix}") };
    dest.with_file_name(name)
}

/// Download (with up to `attempts` resumed tries), verify, extract, rename into `dest`.
/// Returns `dest`. An existing non-empty `dest` is left alone and returned.
pub fn fetch(spec: &DatasetSpec, dest: &Path, progress: bool, attempts: usize) -> Result<PathBuf, FetchError> {
    if dest.is_dir() && std::fs::read_dir(dest).map_err(io(dest))?.next().is_some() {
        return Ok(dest.to_path_buf());
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let part = sibling(dest, ".zip.part", false);
    let mut last = None;
    let mut done = false;
    for _ in 0..attempts.max(1) {
        match download_resume(&spec.url, &part, progress) {
            Ok(()) => {
                done = true;
                break;
            }
            Err(e) => {
                if progress {
                    eprintln!("{e}; resuming");
                }
                last = Some(e);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if !done {
        return Err(last.unwrap_or_else(|| FetchError::Http("no attempt made".into())));
    }
    if let Err(e) = verify(&part, spec) {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    let work = sibling(dest, ".extracting", true);
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io(&work))?;
    }
    if let Err(e) = extract_zip(&part, &work) {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    let inner = spec.strip_top.map(|t| work.join(t)).filter(|p| p.is_dir()).unwrap_or_else(|| work.clone());
    if let Some(want) = spec.content_sha256 {
        let got = match content_sha256(&inner) {
            Ok(got) => got,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        if !want.eq_ignore_ascii_case(&got) {
            let _ = std::fs::remove_dir_all(&work);
            let _ = std::fs::remove_file(&part);
            return Err(FetchError::HashMismatch { what: "content sha256", expected: want.into(), got });
        }
    }
    if dest.exists() {
        // An empty leftover folder; replace it.
        std::fs::remove_dir(dest).map_err(io(dest))?;
    }
    std::fs::rename(&inner, dest).map_err(io(dest))?;
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_file(&part);
    Ok(dest.to_path_buf())
}

/// Streams `url` into `part`, continuing from its current length with an HTTP Range request.
/// A server that ignores the range (200) restarts the file. Ends with an error if the
/// connection drops before Content-Length bytes arrived; the part file is kept for the next try.
pub fn download_resume(url: &str, part: &Path, progress: bool) -> Result<(), FetchError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| FetchError::Http(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    if status == 416 && have > 0 {
        // Range past the end: the part is complete already; the hash check decides.
        return Ok(());
    }
    let (append, total) = match status {
        206 => {
            let cr = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
            let start =
                cr.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|s| s.trim().parse::<u64>().ok());
            if start != Some(have) {
                return Err(FetchError::Http(format!("server resumed at {cr:?}, wanted byte {have}")));
            }
            let total = cr.rsplit('/').next().and_then(|t| t.trim().parse::<u64>().ok());
            (true, total)
        }
        200 => (false, resp.body().content_length()),
        s => return Err(FetchError::Http(format!("{url}: HTTP status {s}"))),
    };
    let expect_body = resp.body().content_length();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(io(part))?;
    let start = if append { have } else { 0 };
    let bar = if progress {
        let b = indicatif::ProgressBar::new(total.unwrap_or(0));
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} ETA {eta}")
        {
            b.set_style(style);
        }
        b.set_position(start);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.flush();
                return Err(FetchError::Http(format!("connection dropped after {} bytes: {e}", start + got)));
            }
        };
        file.write_all(&buf[..n]).map_err(io(part))?;
        got += n as u64;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(io(part))?;
    bar.finish_and_clear();
    if let Some(len) = expect_body {
        if got < len {
            return Err(FetchError::Http(format!("connection closed after {got} of {len} bytes")));
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 and MD5 of a file, as lower-case hex.
pub fn file_hashes(path: &Path) -> Result<(String, String), FetchError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut sha = sha2::Sha256::new();
    let mut md5 = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
    }
    Ok((hex(&sha.finalize()), hex(&md5.finalize())))
}

/// SHA-256 of a dataset's files below its top level (`<class>/<file>`, at any depth), as
/// `sha256sum` lists them: the digest of the lines `"<hex sha256>  <relative/path>\n"` sorted by
/// path bytes. Top-level files (split CSVs, README, the manifest itself) are not part of it, so a
/// copy with extra metadata files hashes like the bare archive.
pub fn content_sha256(root: &Path) -> Result<String, FetchError> {
    let mut files = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if entry.file_type().map_err(io(&path))?.is_dir() {
                stack.push((path, child));
            } else if !rel.is_empty() {
                files.push((child, path));
            }
        }
    }
    files.sort();
    let mut manifest = sha2::Sha256::new();
    for (rel, path) in files {
        let digest = sha2::Sha256::digest(std::fs::read(&path).map_err(io(&path))?);
        manifest.update(format!("{}  {rel}\n", hex(&digest)).as_bytes());
    }
    Ok(hex(&manifest.finalize()))
}

fn verify(part: &Path, spec: &DatasetSpec) -> Result<(), FetchError> {
    let (sha, md5) = file_hashes(part)?;
    if let Some(want) = &spec.sha256 {
        if !want.eq_ignore_ascii_case(&sha) {
            return Err(FetchError::HashMismatch { what: "sha256", expected: want.clone(), got: sha });
        }
    }
    if let Some(want) = &spec.md5 {
        if !want.eq_ignore_ascii_case(&md5) {
            return Err(FetchError::HashMismatch { what: "md5", expected: want.clone(), got: md5 });
        }
    }
    if spec.sha256.is_none() {
        eprintln!("note: no confirmed sha256 for {}; archive sha256 is {sha}", spec.name);
    }
    Ok(())
}

/// Extracts a zip into `out`, refusing entries whose paths escape it.
pub fn extract_zip(archive: &Path, out: &Path) -> Result<(), FetchError> {
    let f = std::fs::File::open(archive).map_err(io(archive))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| FetchError::Archive(e.to_string()))?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| FetchError::Archive(e.to_string()))?;
        let rel = entry
            .enclosed_name()
            .ok_or_else(|| FetchError::Archive(format!("unsafe path {:?} in archive", entry.name())))?;
        let path = out.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io(&path))?;
            continue;
        }
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        let mut w = std::fs::File::create(&path).map_err(io(&path))?;
        std::io::copy(&mut entry, &mut w).map_err(io(&path))?;
    }
    Ok(())
}
