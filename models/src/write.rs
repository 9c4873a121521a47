//! Writer side of the `.rsm` container (std): weights blob assembly, encoding, atomic file writes.

use crate::format::*;
use crate::graph::*;
use std::io::Write;
use std::path::Path;

/// Accumulates constants into the weights blob, each 16-byte aligned so it can be read in place.
#[derive(Default, Clone, Debug)]
pub struct WeightsBuilder {
    pub bytes: Vec<u8>,
}

impl WeightsBuilder {
    pub fn push_bytes(&mut self, data: &[u8]) -> Blob {
        while !self.bytes.len().is_multiple_of(WEIGHTS_ALIGN) {
            self.bytes.push(0);
        }
        let offset = self.bytes.len() as u32;
        self.bytes.extend_from_slice(data);
        Blob { offset, len: data.len() as u32 }
    }
    pub fn push_f32(&mut self, data: &[f32]) -> Blob {
        let b: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_bytes(&b)
    }
    pub fn push_i32(&mut self, data: &[i32]) -> Blob {
        let b: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_bytes(&b)
    }
    pub fn push_i8(&mut self, data: &[i8]) -> Blob {
        let b: Vec<u8> = data.iter().map(|&v| v as u8).collect();
        self.push_bytes(&b)
    }
    /// Stores `data` as a constant tensor of the given shape and returns its descriptor.
    pub fn tensor(&mut self, id: u16, dtype: DType, dims: &[u32], data: &[u8], quant: Quant) -> Tensor {
        let blob = self.push_bytes(data);
        Tensor { id, dtype, shape: Shape::new(dims), storage: Storage::Weights { offset: blob.offset }, quant }
    }
}

/// One op as the GRAPH section stores it (postcard; golden bytes in `models/tests/golden_encoding.rs`).
#[allow(clippy::expect_used, reason = "postcard writing into a Vec has no failure mode (no size limit, no I/O)")]
pub fn encode_op(op: &Op) -> Vec<u8> {
    postcard::to_allocvec(op).expect("postcard encoding into a Vec cannot fail")
}

/// Encodes a model. `info.op_count` is set from `ops`.
#[allow(clippy::expect_used, reason = "postcard writing into a Vec has no failure mode (no size limit, no I/O)")]
pub fn encode(info: &ModelInfo<'_>, ops: &[Op], weights: &[u8], test_vector: Option<TestVector<'_>>) -> Vec<u8> {
    let mut info = *info;
    info.op_count = ops.len() as u32;
    let meta = postcard::to_allocvec(&info).expect("postcard encoding into a Vec cannot fail");
    let mut graph = Vec::new();
    for op in ops {
        graph.extend(encode_op(op));
    }
    let tv = test_vector.map(|t| postcard::to_allocvec(&t).expect("postcard encoding into a Vec cannot fail"));

    let mut sections: Vec<(u32, &[u8])> = vec![(SECTION_META, &meta), (SECTION_GRAPH, &graph)];
    if let Some(tv) = &tv {
        sections.push((SECTION_TEST_VECTOR, tv));
    }
    sections.push((SECTION_WEIGHTS, weights)); // last, so padding before it is the only alignment gap

    let table_len = sections.len() * SECTION_ENTRY_LEN;
    let mut body = vec![0u8; HEADER_LEN + table_len];
    let mut entries = Vec::new();
    for (kind, data) in &sections {
        if *kind == SECTION_WEIGHTS {
            while !body.len().is_multiple_of(WEIGHTS_ALIGN) {
                body.push(0);
            }
        }
        entries.push((*kind, body.len() as u32, data.len() as u32));
        body.extend_from_slice(data);
    }
    body[0..4].copy_from_slice(&MAGIC);
    body[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    body[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    let file_len = body.len() as u32;
    body[8..12].copy_from_slice(&file_len.to_le_bytes());
    body[16..20].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    for (i, (k, o, l)) in entries.iter().enumerate() {
        let e = HEADER_LEN + i * SECTION_ENTRY_LEN;
        body[e..e + 4].copy_from_slice(&k.to_le_bytes());
        body[e + 4..e + 8].copy_from_slice(&o.to_le_bytes());
        body[e + 8..e + 12].copy_from_slice(&l.to_le_bytes());
    }
    let crc = crc32fast::hash(&body[HEADER_LEN..]);
    body[12..16].copy_from_slice(&crc.to_le_bytes());
    body
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// crash or a full disk never leaves a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other("output path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// An input spec for `channels` bands with the same mean/std on each.
pub fn input_spec(height: u32, width: u32, mean: &[f32], std: &[f32]) -> InputSpec {
    let mut m = [0.0; MAX_BANDS];
    let mut s = [1.0; MAX_BANDS];
    m[..mean.len()].copy_from_slice(mean);
    s[..std.len()].copy_from_slice(std);
    InputSpec { height, width, channels: mean.len() as u32, layout: Layout::Hwc, mean: m, std: s, resize_shorter: 0 }
}
