//! `rsim-agent`: the Linux board agent (Jetson, Raspberry Pi; aarch64 or x86_64). Reads a directory
//! of images or one large scene (JPEG/PNG/GeoTIFF), tiles and classifies it with the edge runtime
//! through the same onboard loop the microcontroller firmware runs, sends the telemetry over a
//! serial port or TCP, and writes CSV (plus GeoJSON when the scene is georeferenced).
//!
//! With `--flash STORE` the agent takes its model from an A/B model store (`store.rs`) instead of
//! `--model`, receives new models over its link with `rsim flash` between frames, and switches to a
//! new model once the store has verified and activated it.

mod geo;
mod store;

use clap::Parser;
use rsim_boards::clock::StdClock;
use rsim_boards::field::link::{open, Link, LinkArgs};
use rsim_boards::onboard::{EngineClassifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop};
use rsim_boards::wire::{FrameReader, Msg};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store::{Listener, Store, StoreConfig};

#[derive(Parser, Debug)]
#[command(name = "rsim-agent", version, about = "Tile, classify and report imagery on a Linux board")]
struct Args {
    /// The `.rsm` model to run (or `--flash`).
    #[arg(long, required_unless_present = "flash", conflicts_with = "flash")]
    model: Option<PathBuf>,
    /// Keep models in this A/B model store file (created empty if missing) and take new ones over
    /// the link with `rsim flash`: the agent runs the store's active model and switches after a
    /// verified update. With `--listen` the link accepts one client after another (flash, then ground).
    #[arg(long)]
    flash: Option<PathBuf>,
    /// Size of the model store in MiB (two slots of about half of it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=2048))]
    flash_size_mib: u32,
    /// Public key file (`rsim keygen`'s PREFIX.pub) the store trusts; repeat for several. With any
    /// key, only models signed by one of them, at or above the store's security counter, are accepted.
    #[arg(long = "trust", requires = "flash")]
    trust: Vec<PathBuf>,
    /// Successful inferences that confirm a newly flashed model; until then a restart reverts it
    /// (0: only `rsim confirm` confirms).
    #[arg(long, default_value_t = 8, requires = "flash")]
    confirm_after: u32,
    /// Passes over the input images (0: until stopped; a board serving `--flash` runs on).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// A directory of images (each one is a frame), or one scene file (JPEG, PNG, GeoTIFF).
    #[arg(long)]
    input: PathBuf,
    /// Tile side in pixels (images smaller than a tile are classified whole).
    #[arg(long, default_value_t = 64)]
    tile: u32,
    /// Step between tiles (default: the tile size, no overlap).
    #[arg(long)]
    stride: Option<u32>,
    /// Classes reported per tile (1..=5).
    #[arg(long, default_value_t = 3)]
    top_k: u8,
    /// Per-frame deadline in milliseconds; tiles past it are dropped and counted.
    #[arg(long, default_value_t = 60_000)]
    deadline_ms: u64,
    /// Also send each tile's full int8 output tensor.
    #[arg(long)]
    raw_output: bool,
    /// Threads a large convolution may split over (a board's cores; results are bit-identical for
    /// any count). Default 1: one core, the rest left to the camera and link.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    threads: u16,
    /// CSV results file (one row per tile).
    #[arg(long, default_value = "rsim-results.csv")]
    csv: PathBuf,
    /// GeoJSON results file, written when the scene is a georeferenced GeoTIFF.
    #[arg(long, default_value = "rsim-results.geojson")]
    geojson: PathBuf,
    /// Largest image accepted, in pixels (width x height), checked from the file header before any
    /// buffer is sized or any pixel decoded; larger images are an error naming their size.
    #[arg(long, default_value_t = 100_000_000)]
    max_pixels: u64,
    /// Largest runtime arena the model may ask for, in bytes (the arena is allocated from what the
    /// model file says).
    #[arg(long, default_value_t = 256 << 20)]
    max_arena: usize,
    /// Refuse a model needing more multiply-accumulates per tile than this (default: no limit).
    #[arg(long)]
    max_macs: Option<u64>,
    /// Where to send telemetry (optional: without it the agent only writes files).
    #[command(flatten)]
    link: LinkArgs,
}

/// Frames from image files, decoded to RGB8.
struct Files {
    paths: Vec<PathBuf>,
    next: usize,
    current: Option<PathBuf>,
    max_pixels: u64,
    /// Passes over `paths` (0: endless) and passes started.
    rounds: u32,
    pass: u32,
}

impl Files {
    /// The next image, starting the next pass when one is due.
    fn peek(&mut self) -> Option<&PathBuf> {
        if self.next >= self.paths.len() && (self.rounds == 0 || self.pass + 1 < self.rounds) && !self.paths.is_empty()
        {
            self.next = 0;
            self.pass += 1;
        }
        self.paths.get(self.next)
    }
}

/// An image's size from its header, refused above `max_pixels` before anything is allocated.
fn checked_dimensions(p: &Path, max_pixels: u64) -> Result<(u32, u32), String> {
    let (w, h) = image::image_dimensions(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(format!("{} is {w}x{h} = {pixels} pixels, over --max-pixels {max_pixels}", p.display()));
    }
    Ok((w, h))
}

/// Decodes with the image crate's limits set from `--max-pixels`: the decoder itself refuses a
/// header that lies about the size or an allocation beyond it.
fn decode_limited(p: &Path, max_pixels: u64) -> Result<image::DynamicImage, String> {
    let (w, h) = checked_dimensions(p, max_pixels)?;
    let mut reader = image::ImageReader::open(p)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // Up to 16-bit RGBA while decoding, before the RGB8 conversion.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    reader.decode().map_err(|e| format!("cannot decode {}: {e}", p.display()))
}

/// A CSV field (RFC 4180 quoting when needed): image paths and class names must not add columns.
fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    rsim_boards::field::ground::csv_field(s)
}

impl FrameSource for Files {
    type Error = String;
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, String> {
        let Some(p) = self.peek().cloned() else { return Ok(None) };
        self.next += 1;
        let img = decode_limited(&p, self.max_pixels)?.to_rgb8();
        let px = img.as_raw();
        buf.get_mut(..px.len())
            .ok_or_else(|| format!("{} is larger than the frame buffer", p.display()))?
            .copy_from_slice(px);
        self.current = Some(p);
        Ok(Some(FrameInfo { width: img.width(), height: img.height(), channels: 3 }))
    }
}

/// Sends frames to the board link (if any) and keeps a copy to decode for the result files.
struct Tee {
    copy: Vec<u8>,
    link: Option<Box<dyn Link>>,
    link_errors: u32,
    /// `--flash` with `--listen`: clients come and go; a failed write drops the link.
    listener: Option<Listener>,
}

impl embedded_io::ErrorType for Tee {
    type Error = std::convert::Infallible;
}

impl embedded_io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.copy.extend_from_slice(buf);
        if let Some(l) = &mut self.link {
            if l.write_all(buf).is_err() {
                self.link_errors += 1; // the ground may be away; classification goes on
                if self.listener.is_some() {
                    self.link = None;
                }
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn list_inputs(input: &Path) -> Result<Vec<PathBuf>, String> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let rd = std::fs::read_dir(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "tif" | "tiff")
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(format!("no JPEG/PNG/TIFF images in {}", input.display()));
    }
    Ok(v)
}

/// What the result files gather over every model the agent ran.
#[derive(Default)]
struct Results {
    csv: String,
    feats: Vec<geo::Feature>,
}

/// How a model's run ended.
enum Ended {
    /// The input ran out.
    Done,
    /// `rsim flash` activated another model: load it.
    Switched,
}

fn run(a: &Args) -> Result<(), String> {
    let paths = list_inputs(&a.input)?;
    let geo = if paths.len() == 1 { geo::read(&paths[0]) } else { None };
    let mut tee = Tee { copy: Vec::new(), link: None, link_errors: 0, listener: None };
    match (&a.flash, &a.link.listen) {
        (Some(_), Some(addr)) => tee.listener = Some(Listener::bind(addr)?),
        _ if a.link.port.is_some() || a.link.tcp.is_some() || a.link.listen.is_some() => {
            // Serving `--flash`, the link is read between frames: a short timeout keeps frames flowing.
            let timeout = Duration::from_millis(if a.flash.is_some() { 1 } else { 50 });
            tee.link = Some(open(&a.link, timeout)?);
        }
        _ => {}
    }
    let mut src = Files { paths, next: 0, current: None, max_pixels: a.max_pixels, rounds: a.rounds, pass: 0 };
    let mut res = Results {
        csv: String::from("image,frame_id,tile_index,x,y,size,class,class_name,confidence,q,latency_us\n"),
        feats: Vec::new(),
    };
    let mut stats = (0u32, 0u32, 0u32);
    if let Some(path) = &a.flash {
        let keys: Vec<[u8; 32]> =
            a.trust.iter().map(|p| rsim_boards::field::trust::read_key(p)).collect::<Result<_, _>>()?;
        let cfg = StoreConfig {
            path,
            size: a.flash_size_mib as usize * (1 << 20),
            // The store's trust policy lives as long as the agent.
            keys: Box::leak(keys.into_boxed_slice()),
            confirm_after: a.confirm_after,
            max_arena: a.max_arena,
            max_input_bytes: u32::MAX,
            max_macs: a.max_macs,
        };
        let mut store = Store::open(&cfg)?;
        loop {
            let Some((model, slot, seq)) = store.active_model()? else {
                wait_for_model(&mut store, &mut tee);
                continue;
            };
            eprintln!("rsim-agent: running the model in slot {} (boot record {seq})", store::slot_name(slot));
            match run_model(a, &model, &mut tee, Some(&mut store), &mut src, &mut res, &mut stats) {
                Ok(Ended::Done) => break,
                Ok(Ended::Switched) => continue,
                // A model the store verified but the agent's limits refuse: wait for another.
                Err(e) => {
                    eprintln!("rsim-agent: {e}");
                    wait_for_model(&mut store, &mut tee);
                }
            }
        }
    } else if let Some(path) = &a.model {
        let model = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        run_model(a, &model, &mut tee, None, &mut src, &mut res, &mut stats)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    rsim_model::write::write_atomic(&a.csv, res.csv.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", a.csv.display()))?;
    eprintln!(
        "rsim-agent: {} frames, {} tiles ({} dropped past the deadline), results in {}; link errors {}",
        stats.0,
        stats.1,
        stats.2,
        a.csv.display(),
        tee.link_errors
    );
    if let Some(g) = geo {
        rsim_model::write::write_atomic(&a.geojson, geo::geojson(&g, &res.feats).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", a.geojson.display()))?;
        eprintln!("rsim-agent: georeferenced scene: {} tiles in {}", res.feats.len(), a.geojson.display());
    }
    Ok(())
}

/// A transfer with no byte for this long is taken as stalled: classification resumes.
const STALL: Duration = Duration::from_millis(200);

/// Serves the link once: takes a new client (`--listen`), reads what arrived, hands it to the store.
/// Returns (bytes read, whether a model was activated).
fn poll_link(store: &mut Store, tee: &mut Tee) -> (usize, bool) {
    if tee.link.is_none() {
        tee.link = tee.listener.as_ref().and_then(Listener::accept);
    }
    let Some(link) = tee.link.as_mut() else { return (0, false) };
    let mut buf = [0u8; 4096];
    match store::read_link(link.as_mut(), &mut buf) {
        None => {
            tee.link = None; // the client left; a listener takes the next one
            (0, false)
        }
        Some(n) => (n, n > 0 && store.receive(&buf[..n], link.as_mut()).is_some()),
    }
}

/// No runnable model: serve the link until `rsim flash` activates one.
fn wait_for_model(store: &mut Store, tee: &mut Tee) {
    loop {
        let (n, activated) = poll_link(store, tee);
        if activated {
            return;
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Runs `model` over the input until it ends or, with a store, `rsim flash` activates another model.
fn run_model(
    a: &Args,
    model: &[u8],
    tee: &mut Tee,
    mut store: Option<&mut Store>,
    src: &mut Files,
    res: &mut Results,
    stats: &mut (u32, u32, u32),
) -> Result<Ended, String> {
    let need = rsim_edge::required_arena(model).map_err(|e| e.to_string())?;
    if need > a.max_arena {
        return Err(format!("the model needs a {need}-byte arena, over --max-arena {}", a.max_arena));
    }
    let mut arena = vec![0u8; need + 16];
    let opts = rsim_edge::Options { threads: a.threads as usize, max_macs: a.max_macs, ..Default::default() };
    let engine = rsim_edge::Engine::with_options(model, &mut arena, opts).map_err(|e| e.to_string())?;
    let mut clf = EngineClassifier { engine };
    let names: Vec<String> = clf.engine.model().info.classes().map(str::to_string).collect();
    let cfg = LoopConfig {
        tile: a.tile,
        stride: a.stride.unwrap_or(a.tile),
        top_k: a.top_k,
        deadline_us: a.deadline_ms * 1000,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: a.raw_output,
    };
    let mut tile = vec![0u8; (a.tile as usize).pow(2) * 3];
    let mut lp = OnboardLoop::new(cfg, StdClock::default(), &mut tile, &mut []);
    let mut frame = Vec::new();
    if store.is_some() {
        // Each model's frame ids count from the first image, as on the firmware.
        src.next = 0;
        src.pass = 0;
    }
    let ended = loop {
        if let Some(store) = store.as_deref_mut() {
            // The link first; during a transfer, only the link (until it stalls).
            let mut last_rx = Instant::now();
            let mut switched = false;
            loop {
                let (n, activated) = poll_link(store, tee);
                if activated {
                    switched = true;
                    break;
                }
                if n > 0 {
                    last_rx = Instant::now();
                }
                if !store.busy() || last_rx.elapsed() > STALL {
                    break;
                }
            }
            if switched {
                break Ended::Switched;
            }
        }
        // Size the frame buffer for the next image (scenes can be large).
        if let Some(p) = src.peek() {
            let (w, h) = checked_dimensions(p, a.max_pixels)?;
            let bytes = usize::try_from(u64::from(w) * u64::from(h) * 3).map_err(|_| "image too large".to_string())?;
            frame.resize(bytes, 0);
        }
        let before = lp.stats;
        if !lp.step(src, &mut frame, &mut clf, tee).map_err(|e| e.to_string())? {
            break Ended::Done;
        }
        if let Some(store) = store.as_deref_mut() {
            let ok = lp.stats.tiles.wrapping_sub(before.tiles)
                - lp.stats
                    .classify_errors
                    .wrapping_sub(before.classify_errors)
                    .min(lp.stats.tiles.wrapping_sub(before.tiles));
            (0..ok).for_each(|_| store.inference_ok());
        }
        let name = src.current.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let mut r: FrameReader = FrameReader::new();
        for &b in &tee.copy {
            if let Some(Ok(Msg::Telemetry(t))) = r.push(b) {
                if t.count == 0 {
                    continue;
                }
                let top = t.top[0];
                let cname = names.get(top.class as usize).cloned().unwrap_or_default();
                let _ = writeln!(
                    res.csv,
                    "{},{},{},{},{},{},{},{},{:.6},{},{}",
                    csv_cell(&name),
                    t.frame_id,
                    t.tile_index,
                    t.tile_x,
                    t.tile_y,
                    t.tile_size,
                    top.class,
                    csv_cell(&cname),
                    top.confidence,
                    top.q,
                    t.latency_us
                );
                res.feats.push(geo::Feature {
                    x: t.tile_x as u32,
                    y: t.tile_y as u32,
                    size: t.tile_size as u32,
                    class: cname,
                    confidence: top.confidence,
                });
            }
        }
        tee.copy.clear();
    };
    lp.heartbeat_if_due(tee);
    tee.copy.clear();
    let s = lp.stats;
    *stats = (stats.0 + s.frames, stats.1 + s.tiles, stats.2 + s.tiles_dropped);
    Ok(ended)
}

fn main() {
    let a = Args::parse();
    if let Err(e) = run(&a) {
        eprintln!("rsim-agent: {e}");
        std::process::exit(1);
    }
}
