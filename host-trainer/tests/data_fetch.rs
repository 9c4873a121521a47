//! `fetch` against a local HTTP server the test runs: resume after a mid-way disconnect,
//! hash checks that leave nothing half-written, archive safety.
use rsim_train::fetch::{content_sha256, download_dataset, fetch, DatasetSpec, FetchError, EUROSAT_RGB_CONTENT_SHA256};
use sha2::Digest;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn build_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Serves `body` at any path for at most `max_conns` connections or 30 s. The first response
/// announces the full length but stops half-way and closes (when `cut_first`). Later requests
/// honour `Range: bytes=N-`. Returns the URL and the Range start seen on each request.
fn serve(body: Vec<u8>, max_conns: usize, cut_first: bool) -> (String, Arc<Mutex<Vec<Option<u64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/EuroSAT.zip", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < max_conns && Instant::now() < deadline {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            served += 1;
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
            let start = text
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim().trim_end_matches('-').parse::<u64>().ok());
            log.lock().unwrap().push(start);
            let total = body.len();
            let from = start.unwrap_or(0) as usize;
            let head = if start.is_some() {
                format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{total}\r\nConnection: close\r\n\r\n", total - from, total - 1)
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n")
            };
            let _ = s.write_all(head.as_bytes());
            if cut_first && served == 1 {
                let _ = s.write_all(&body[..total / 2]);
                let _ = s.flush();
                // Drop the connection mid-body.
                let _ = s.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let _ = s.write_all(&body[from..]);
            let _ = s.flush();
        }
    });
    (url, seen)
}

fn spec(url: String, sha256: Option<String>) -> DatasetSpec {
    DatasetSpec {
        name: "test-set",
        url,
        sha256,
        md5: None,
        strip_top: Some("top"),
        content_sha256: None,
        description: "test",
    }
}

#[test]
fn resumes_after_disconnect_and_extracts() {
    let a = payload(300_000);
    let b = payload(1234);
    let zip = build_zip(&[("top/classA/x.bin", a.clone()), ("top/classB/y.bin", b.clone())]);
    let sha: String = sha2::Sha256::digest(&zip).iter().map(|b| format!("{b:02x}")).collect();
    let (url, seen) = serve(zip.clone(), 3, true);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("data/eurosat-rgb");
    let out = fetch(&spec(url, Some(sha)), &dest, false, 3).unwrap();
    assert_eq!(out, dest);
    assert_eq!(std::fs::read(dest.join("classA/x.bin")).unwrap(), a);
    assert_eq!(std::fs::read(dest.join("classB/y.bin")).unwrap(), b);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one cut download, one resumed: {seen:?}");
    assert_eq!(seen[0], None);
    let resumed_at = seen[1].expect("second request must ask for a range");
    assert!(resumed_at > 0 && resumed_at <= zip.len() as u64 / 2 + 1, "resumed at {resumed_at}");
    // Nothing left beside the dataset.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("eurosat-rgb")]);
}

#[test]
fn wrong_hash_leaves_no_dataset() {
    let zip = build_zip(&[("top/c/x.bin", payload(5000))]);
    let (url, _) = serve(zip, 2, false);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("eurosat-rgb");
    let err = fetch(&spec(url, Some("0".repeat(64))), &dest, false, 2).unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { what: "sha256", .. }), "{err}");
    assert!(err.to_string().contains("sha256 mismatch"));
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no .part, no extraction folder");
}

#[test]
fn archive_paths_may_not_escape() {
    let zip = build_zip(&[("../evil.bin", payload(10))]);
    let sha: String = sha2::Sha256::digest(&zip).iter().map(|b| format!("{b:02x}")).collect();
    let (url, _) = serve(zip, 2, false);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("inner/ds");
    let err = fetch(&spec(url, Some(sha)), &dest, false, 1).unwrap_err();
    assert!(matches!(err, FetchError::Archive(_)), "{err}");
    assert!(!dest.exists());
    assert!(!dir.path().join("inner/evil.bin").exists() && !dir.path().join("evil.bin").exists());
}

#[test]
fn unknown_dataset_names_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let err = download_dataset("imagenet", &dir.path().join("x"), false).unwrap_err().to_string();
    assert!(err.contains("eurosat-rgb"), "{err}");
}

/// The extracted dataset is checked against its pinned content digest before it is moved into place:
/// a changed image (archive hash not pinned, as for EuroSAT) leaves no dataset behind.
#[test]
fn changed_content_is_refused_before_the_dataset_appears() {
    let zip = build_zip(&[("top/c/x.bin", payload(5000)), ("top/c/y.bin", payload(7))]);
    let (url, _) = serve(zip, 4, false);
    let dir = tempfile::tempdir().unwrap();
    // The pin of the genuine content, from a copy written as sha256sum would list it.
    let genuine = dir.path().join("genuine");
    std::fs::create_dir_all(genuine.join("c")).unwrap();
    std::fs::write(genuine.join("c/x.bin"), payload(5000)).unwrap();
    std::fs::write(genuine.join("c/y.bin"), payload(7)).unwrap();
    std::fs::write(genuine.join("README"), b"top-level files are not content").unwrap();
    let pin: &'static str = Box::leak(content_sha256(&genuine).unwrap().into_boxed_str());
    let good = DatasetSpec { content_sha256: Some(pin), ..spec(url.clone(), None) };
    let dest = dir.path().join("ok");
    fetch(&good, &dest, false, 1).unwrap();
    assert_eq!(content_sha256(&dest).unwrap(), pin);

    let (url, _) = serve(build_zip(&[("top/c/x.bin", payload(5000)), ("top/c/y.bin", payload(8))]), 2, false);
    let bad = DatasetSpec { content_sha256: Some(pin), ..spec(url, None) };
    let dest = dir.path().join("bad/eurosat-rgb");
    let err = fetch(&bad, &dest, false, 1).unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { what: "content sha256", .. }), "{err}");
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir.path().join("bad")).unwrap().count(), 0, "no .part, no extraction folder");
}

/// The EuroSAT pin is the digest of the real images: recomputed here from the local copy.
#[test]
fn eurosat_content_pin_matches_the_real_images() {
    let Some(root) = rsim_test_support::dataset("eurosat-rgb") else { return };
    assert_eq!(content_sha256(&root).unwrap(), EUROSAT_RGB_CONTENT_SHA256);
}
