//! Labelled file lists: image folders (one subfolder per class) and CSV split files.
use super::error::DataError;
use std::path::{Path, PathBuf};

/// File extensions taken as images when scanning folders (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "tif", "tiff", "bmp"];

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Class index into `Dataset::classes`; -1 for unlabeled images.
    pub label: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub root: PathBuf,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::Io { path: dir.into(), source: e })?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::Io { path: dir.into(), source: e })?;
        v.push(e.path());
    }
    // Byte order of names, as Python's sorted() on ASCII names (the seeds' order).
    v.sort();
    Ok(v)
}

impl Dataset {
    /// One subfolder per class, class names sorted; files within a class sorted by name.
    /// Hidden entries and non-image files are ignored.
    pub fn from_folder(root: &Path) -> Result<Dataset, DataError> {
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        for dir in sorted_entries(root)? {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if !dir.is_dir() || name.starts_with('.') {
                continue;
            }
            let label = classes.len() as i64;
            classes.push(name);
            for f in sorted_entries(&dir)? {
                let hidden = f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
                if f.is_file() && !hidden && is_image(&f) {
                    samples.push(Sample { path: f, label });
                }
            }
        }
        if classes.is_empty() {
            return Err(DataError::layout(root, "no class subfolders found"));
        }
        if samples.is_empty() {
            return Err(DataError::layout(root, "class subfolders hold no image files"));
        }
        Ok(Dataset { root: root.into(), classes, samples })
    }

    /// All image files under `root` (recursively, sorted), unlabeled (label -1): for SSL on
    /// imagery that has no classes.
    pub fn unlabeled(root: &Path) -> Result<Dataset, DataError> {
        let mut samples = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for p in sorted_entries(&d)? {
                if p.is_dir() {
                    stack.push(p);
                } else if is_image(&p) {
                    samples.push(Sample { path: p, label: -1 });
                }
            }
        }
        samples.sort_by(|a, b| a.path.cmp(&b.path));
        if samples.is_empty() {
            return Err(DataError::layout(root, "no image files found"));
        }
        Ok(Dataset { root: root.into(), classes: Vec::new(), samples })
    }

    /// A CSV split file (e.g. EuroSAT's `train.csv`: `,Filename,Label,ClassName`). The header
    /// names the columns: path = filename|file|path|image|filepath; label = label|class_id|target;
    /// class name = classname|class_name|class. Paths are relative to `root` (default: the
    /// CSV's folder). Without a label column, classes are the sorted distinct class names;
    /// without either, the path's first folder is the class.
    pub fn from_csv(csv_path: &Path, root: Option<&Path>) -> Result<Dataset, DataError> {
        let root = root.map(Path::to_path_buf).unwrap_or_else(|| csv_path.parent().unwrap_or(Path::new(".")).into());
        let bad = |r: String| DataError::layout(csv_path, r);
        let mut rdr =
            csv::ReaderBuilder::new().has_headers(true).from_path(csv_path).map_err(|e| bad(e.to_string()))?;
        let headers: Vec<String> =
            rdr.headers().map_err(|e| bad(e.to_string()))?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
        let find = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
        let path_col = find(&["filename", "file", "path", "image", "filepath", "file_name"])
            .ok_or_else(|| bad(format!("no path column (filename/file/path/image) in header {headers:?}")))?;
        let label_col = find(&["label", "class_id", "target"]);
        let name_col = find(&["classname", "class_name", "class"]);
        let mut rows: Vec<(PathBuf, Option<i64>, String)> = Vec::new();
        for (line, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
            let rel = rec.get(path_col).unwrap_or("").trim();
            if rel.is_empty() {
                return Err(bad(format!("row {}: empty path", line + 2)));
            }
            let label = match label_col {
                Some(c) => Some(
                    rec.get(c)
                        .unwrap_or("")
                        .trim()
                        .parse::<i64>()
                        .map_err(|e| bad(format!("row {}: label: {e}", line + 2)))?,
                ),
                None => None,
            };
            let name = match name_col {
                Some(c) => rec.get(c).unwrap_or("").trim().to_string(),
                None => Path::new(rel)
                    .components()
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            rows.push((root.join(rel), label, name));
        }
        let mut classes: Vec<String>;
        let mut samples = Vec::with_capacity(rows.len());
        if label_col.is_some() {
            let max = rows.iter().filter_map(|r| r.1).max().unwrap_or(-1);
            if rows.iter().any(|r| r.1.unwrap_or(0) < 0) || max > 1_000_000 {
                return Err(bad("labels must be in 0..=1000000".into()));
            }
            classes = (0..=max).map(|i| i.to_string()).collect();
            let mut named = vec![false; classes.len()];
            for (p, l, n) in &rows {
                let l = l.unwrap_or(0) as usize;
                if name_col.is_some() || !n.is_empty() {
                    if named[l] && classes[l] != *n {
                        return Err(bad(format!("label {l} is named both {:?} and {n:?}", classes[l])));
                    }
                    classes[l] = n.clone();
                    named[l] = true;
                }
                samples.push(Sample { path: p.clone(), label: l as i64 });
            }
        } else {
            classes = rows.iter().map(|r| r.2.clone()).collect();
            classes.sort();
            classes.dedup();
            for (p, _, n) in &rows {
                let l = classes.binary_search(n).unwrap_or(0) as i64;
                samples.push(Sample { path: p.clone(), label: l });
            }
        }
        if samples.is_empty() {
            return Err(bad("no rows".into()));
        }
        Ok(Dataset { root, classes, samples })
    }

    /// Sample indices per class, each list sorted by file name (then path) as the seeds do.
    pub fn by_class(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.classes.len()];
        for (i, s) in self.samples.iter().enumerate() {
            if let Some(v) = usize::try_from(s.label).ok().and_then(|l| out.get_mut(l)) {
                v.push(i);
            }
        }
        for v in out.iter_mut() {
            v.sort_by(|&a, &b| {
                let (pa, pb) = (&self.samples[a].path, &self.samples[b].path);
                pa.file_name().cmp(&pb.file_name()).then_with(|| pa.cmp(pb))
            });
        }
        out
    }

    /// A dataset holding the given samples (same classes), in the given order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let samples = indices.iter().filter_map(|&i| self.samples.get(i).cloned()).collect();
        Dataset { root: self.root.clone(), classes: self.classes.clone(), samples }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Count of samples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        self.by_class().iter().map(Vec::len).collect()
    }
}
