//! The Python peers (ONNX Runtime, LiteRT): `.venv` set-up and the `bench/peers.py` worker.
//!
//! The worker stays up for the whole run; the bench sends it one JSON command per line (load a
//! model, run it N times, unload) and reads one JSON answer per line (see peers.py).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Python packages the peers need: (import name, pip name).
const PACKAGES: &[(&str, &str)] =
    &[("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("ai_edge_litert.interpreter", "ai-edge-litert")];

pub struct Worker {
    child: Child,
    /// None once closed (on drop).
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The start-up answer: versions, and why a peer is unavailable.
    pub hello: Value,
    pub stderr_log: PathBuf,
}

fn venv_python(repo: &Path) -> PathBuf {
    repo.join(".venv").join("bin").join("python")
}

fn imports(python: &Path, module: &str) -> Result<(), String> {
    let out = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().last().unwrap_or("import failed").to_string())
    }
}

/// Makes sure `<repo>/.venv` exists and holds numpy, onnxruntime and ai-edge-litert (pip-installing
/// what is missing, one package at a time so one failure does not block the others). Returns the
/// interpreter; Err only when there is no usable interpreter at all.
pub fn ensure_venv(repo: &Path) -> Result<PathBuf, String> {
    let python = venv_python(repo);
    if !python.exists() {
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        eprintln!("rsim-bench: no {}: creating it ({base} -m venv .venv)", python.display());
        let st = Command::new(&base)
            .args(["-m", "venv"])
            .arg(repo.join(".venv"))
            .status()
            .map_err(|e| format!("cannot start {base} to create .venv: {e}"))?;
        if !st.success() || !python.exists() {
            return Err(format!("`{base} -m venv {}` failed ({st})", repo.join(".venv").display()));
        }
    }
    for (module, pip_name) in PACKAGES {
        if imports(&python, module).is_ok() {
            continue;
        }
        eprintln!("rsim-bench: installing {pip_name} into .venv (pip install {pip_name})");
        let st = Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", pip_name])
            .status();
        match st {
            Ok(s) if s.success() => {}
            Ok(s) => {
                eprintln!("rsim-bench: pip install {pip_name} failed ({s}); the peers that need it will be skipped")
            }
            Err(e) => eprintln!("rsim-bench: cannot run pip ({e}); the peers that need {pip_name} will be skipped"),
        }
    }
    Ok(python)
}

impl Worker {
    /// Starts `bench/peers.py` under `python`; its stderr goes to `stderr_log`.
    pub fn start(python: &Path, script: &Path, stderr_log: &Path) -> Result<Worker, String> {
        let log = std::fs::File::create(stderr_log).map_err(|e| format!("{}: {e}", stderr_log.display()))?;
        let mut child = Command::new(python)
            .arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {} {}: {e}", python.display(), script.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout pipe")?);
        let mut w =
            Worker { child, stdin: Some(stdin), stdout, hello: Value::Null, stderr_log: stderr_log.to_path_buf() };
        w.hello = w.read()?;
        Ok(w)
    }

    /// Version of `peer` ("onnxruntime" or "litert"), or why it cannot run.
    pub fn available(&self, peer: &str) -> Result<String, String> {
        if self.hello["numpy"].is_null() {
            return Err(format!("numpy does not import: {}", self.hello["numpy_error"].as_str().unwrap_or("?")));
        }
        match self.hello[peer].as_str() {
            Some(v) => Ok(v.to_string()),
            None => Err(self.hello[format!("{peer}_error")].as_str().unwrap_or("not importable").to_string()),
        }
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).map_err(|e| format!("reading from peers.py: {e}"))?;
        if n == 0 {
            let tail = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(format!(
                "peers.py exited ({}); last stderr lines: {}",
                self.stderr_log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        serde_json::from_str(&line).map_err(|e| format!("peers.py answered something that is not JSON ({e}): {line}"))
    }

    fn call(&mut self, req: Value) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("peers.py is closed")?;
        writeln!(stdin, "{req}").and_then(|_| stdin.flush()).map_err(|e| format!("writing to peers.py: {e}"))?;
        let v = self.read()?;
        if v["ok"].as_bool() == Some(true) {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("peers.py failed without a message").to_string())
        }
    }

    /// Loads `model` into `engine` ("onnxruntime" or "litert") under `id`, with the raw input in `input`.
    pub fn load(&mut self, id: &str, engine: &str, model: &Path, input: &Path) -> Result<(), String> {
        self.call(json!({"cmd": "load", "id": id, "engine": engine, "model": model, "input": input})).map(|_| ())
    }

    /// Seconds of each of `n` inferences.
    pub fn run(&mut self, id: &str, n: usize) -> Result<Vec<f64>, String> {
        let v = self.call(json!({"cmd": "run", "id": id, "n": n}))?;
        let times = v["times_ns"].as_array().ok_or("no times_ns in the answer")?;
        Ok(times.iter().filter_map(Value::as_f64).map(|ns| ns * 1e-9).collect())
    }

    pub fn unload(&mut self, id: &str) {
        let _ = self.call(json!({"cmd": "unload", "id": id}));
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin ends the worker's loop; wait for it so no process is left behind.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
