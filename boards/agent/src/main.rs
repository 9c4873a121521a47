//! `rsim-agent`: the Linux board agent (Jetson, Raspberry Pi; aarch64 or x86_64). Reads a directory
//! of images or one large scene (JPEG/PNG/GeoTIFF), tiles and classifies it with the edge runtime
//! through the same onboard loop the microcontroller firmware runs, sends the telemetry over a
//! serial port or TCP, and writes CSV (plus GeoJSON when the scene is georeferenced).

mod geo;

use clap::Parser;
use rsim_boards::clock::StdClock;
use rsim_boards::field::link::{open, Link, LinkArgs};
use rsim_boards::onboard::{EngineClassifier, FrameInfo, FrameSource, LoopConfig, OnboardLoop};
use rsim_boards::wire::{FrameReader, Msg};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "rsim-agent", version, about = "Tile, classify and report imagery on a Linux board")]
struct Args {
    /// The `.rsm` model to run.
    #[arg(long)]
    model: PathBuf,
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
        let Some(p) = self.paths.get(self.next).cloned() else { return Ok(None) };
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

fn run(a: &Args) -> Result<(), String> {
    let model = std::fs::read(&a.model).map_err(|e| format!("cannot read {}: {e}", a.model.display()))?;
    let need = rsim_edge::required_arena(&model).map_err(|e| format!("{}: {e}", a.model.display()))?;
    if need > a.max_arena {
        return Err(format!(
            "{}: the model needs a {need}-byte arena, over --max-arena {}",
            a.model.display(),
            a.max_arena
        ));
    }
    let mut arena = vec![0u8; need + 16];
    let opts = rsim_edge::Options { threads: a.threads as usize, max_macs: a.max_macs, ..Default::default() };
    let engine =
        rsim_edge::Engine::with_options(&model, &mut arena, opts).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let mut clf = EngineClassifier { engine };
    let names: Vec<String> = clf.engine.model().info.classes().map(str::to_string).collect();
    let paths = list_inputs(&a.input)?;
    let geo = if paths.len() == 1 { geo::read(&paths[0]) } else { None };
    let link = if a.link.port.is_some() || a.link.tcp.is_some() || a.link.listen.is_some() {
        Some(open(&a.link, Duration::from_millis(50))?)
    } else {
        None
    };
    let mut tee = Tee { copy: Vec::new(), link, link_errors: 0 };
    let stride = a.stride.unwrap_or(a.tile);
    let cfg = LoopConfig {
        tile: a.tile,
        stride,
        top_k: a.top_k,
        deadline_us: a.deadline_ms * 1000,
        heartbeat_us: 1_000_000,
        smoothing: None,
        send_raw_output: a.raw_output,
    };
    let mut tile = vec![0u8; (a.tile as usize).pow(2) * 3];
    let mut lp = OnboardLoop::new(cfg, StdClock::default(), &mut tile, &mut []);
    let mut src = Files { paths, next: 0, current: None, max_pixels: a.max_pixels };
    let mut csv = String::from("image,frame_id,tile_index,x,y,size,class,class_name,confidence,q,latency_us\n");
    let mut feats = Vec::new();
    let mut frame = Vec::new();
    loop {
        // Size the frame buffer for the next image (scenes can be large).
        if let Some(p) = src.paths.get(src.next) {
            let (w, h) = checked_dimensions(p, a.max_pixels)?;
            let bytes = usize::try_from(u64::from(w) * u64::from(h) * 3).map_err(|_| "image too large".to_string())?;
            frame.resize(bytes, 0);
        }
        if !lp.step(&mut src, &mut frame, &mut clf, &mut tee).map_err(|e| e.to_string())? {
            break;
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
                    csv,
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
                feats.push(geo::Feature {
                    x: t.tile_x as u32,
                    y: t.tile_y as u32,
                    size: t.tile_size as u32,
                    class: cname,
                    confidence: top.confidence,
                });
            }
        }
        tee.copy.clear();
    }
    lp.heartbeat_if_due(&mut tee);
    rsim_model::write::write_atomic(&a.csv, csv.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", a.csv.display()))?;
    let s = lp.stats;
    eprintln!(
        "rsim-agent: {} frames, {} tiles ({} dropped past the deadline), results in {}; link errors {}",
        s.frames,
        s.tiles,
        s.tiles_dropped,
        a.csv.display(),
        tee.link_errors
    );
    if let Some(g) = geo {
        rsim_model::write::write_atomic(&a.geojson, geo::geojson(&g, &feats).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", a.geojson.display()))?;
        eprintln!("rsim-agent: georeferenced scene: {} tiles in {}", feats.len(), a.geojson.display());
    }
    Ok(())
}

fn main() {
    let a = Args::parse();
    if let Err(e) = run(&a) {
        eprintln!("rsim-agent: {e}");
        std::process::exit(1);
    }
}
