//! `ground`: decode board telemetry live into a terminal table; optionally save CSV and a class-map PNG.

use super::classmap::{write_png, TileClass};
use super::link::{open, read_some, Link, LinkArgs};
use crate::wire::{FrameReader, Msg, Telemetry};
use clap::Args;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Receive telemetry from a board and show it.
#[derive(Args, Clone, Debug)]
pub struct GroundArgs {
    #[command(flatten)]
    pub link: LinkArgs,
    /// Decode a recorded byte capture instead of a live link.
    #[arg(long, conflicts_with_all = ["port", "tcp", "listen"])]
    pub replay: Option<PathBuf>,
    /// Record the raw link bytes to this file (to replay later).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// The model the board runs, for class names (a `.rsm` file).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Write every telemetry row to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write a class-map PNG of the tiles received (last result per tile position).
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Scene pixels per class-map pixel.
    #[arg(long, default_value_t = 8)]
    pub map_scale: u32,
    /// Largest class-map side in pixels: tile positions come off the link (two u16 fields could ask
    /// for a 131070 x 131070 map, tens of GB), so a larger map is an error naming its size.
    #[arg(long, default_value_t = DEFAULT_MAP_MAX_SIDE)]
    pub map_max_side: u32,
    /// Most telemetry frames (and raw outputs) kept for the CSV and the map; later ones are still
    /// shown and counted, and the summary says how many were not kept.
    #[arg(long, default_value_t = DEFAULT_MAX_REPORTS)]
    pub max_reports: usize,
    /// Stop after this many seconds (live links; 0 = until the link closes).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Print only heartbeats and the summary, not one row per tile.
    #[arg(long)]
    pub quiet: bool,
}

/// Default of `--map-max-side`: 16384 x 16384 RGB is 768 MiB at most.
pub const DEFAULT_MAP_MAX_SIDE: u32 = 16_384;
/// Default of `--max-reports`: about 100 MB of buffered telemetry.
pub const DEFAULT_MAX_REPORTS: usize = 1_000_000;

/// What the ground station received.
#[derive(Clone, Debug, Default)]
pub struct GroundReport {
    pub telemetry: Vec<Telemetry>,
    pub raw_outputs: Vec<(u32, u16, Vec<u8>)>,
    pub heartbeats: u32,
    pub bad_frames: u32,
    /// Telemetry frames and raw outputs received beyond `--max-reports` (shown, not kept).
    pub not_kept: u64,
}

/// A CSV field: quoted (with inner quotes doubled) when it holds a comma, quote or line break, as
/// RFC 4180 says; class names come from model files and must not shift or add columns.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        std::borrow::Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn class_names(model: &Option<PathBuf>) -> Result<Vec<String>, String> {
    let Some(p) = model else { return Ok(vec![]) };
    let bytes = std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let m = rsim_model::Model::parse(&bytes).map_err(|e| format!("{} is not a valid model: {e}", p.display()))?;
    let names = m.info.classes().map(str::to_string).collect();
    Ok(names)
}

/// One table row for a telemetry frame.
pub fn row(t: &Telemetry, names: &[String]) -> String {
    let mut s = format!("{:>7} {:>5} {:>6} {:>6} ", t.frame_id, t.tile_index, t.tile_x, t.tile_y);
    // The decoder refuses count > TOP_K_MAX; a Telemetry built elsewhere is clamped, never sliced past.
    for sc in t.top.get(..t.count as usize).unwrap_or(&t.top) {
        let name = names.get(sc.class as usize).cloned().unwrap_or_else(|| format!("#{}", sc.class));
        let _ = write!(s, " {name}:{:.2}", sc.confidence);
    }
    let _ = write!(s, "  {:>6} us  arena {}", t.latency_us, t.arena_hwm);
    s
}

/// Decodes `bytes` into the report, printing as it goes.
pub fn consume(
    bytes: &[u8],
    reader: &mut FrameReader,
    rep: &mut GroundReport,
    names: &[String],
    quiet: bool,
    max_reports: usize,
) {
    for &b in bytes {
        match reader.push(b) {
            Some(Ok(Msg::Telemetry(t))) => {
                if !quiet {
                    println!("{}", row(&t, names));
                }
                if rep.telemetry.len() < max_reports {
                    rep.telemetry.push(t);
                } else {
                    rep.not_kept += 1;
                }
            }
            Some(Ok(Msg::Heartbeat(h))) => {
                rep.heartbeats += 1;
                println!(
                    "-- heartbeat: up {:.1} s, {} frames ({} late), {} tiles ({} dropped), tx errors {}, rx bad {}, model seq {} slot {}",
                    h.uptime_ms as f64 / 1e3, h.frames, h.frames_late, h.tiles, h.tiles_dropped, h.tx_errors, h.rx_bad_frames, h.model_seq, h.active_slot
                );
            }
            Some(Ok(Msg::RawOutput { frame_id, tile_index, data })) => {
                if rep.raw_outputs.len() < max_reports {
                    rep.raw_outputs.push((frame_id, tile_index, data.to_vec()))
                } else {
                    rep.not_kept += 1;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => rep.bad_frames += 1,
            None => {}
        }
    }
}

/// Runs the ground station until the link closes, the time is up or the replay ends.
pub fn run_ground(args: &GroundArgs) -> Result<GroundReport, String> {
    let names = class_names(&args.model)?;
    let mut rep = GroundReport::default();
    let mut reader: FrameReader = FrameReader::new();
    if !args.quiet {
        println!("{:>7} {:>5} {:>6} {:>6}  top classes  latency  arena", "frame", "tile", "x", "y");
    }
    let mut record = match &args.record {
        Some(p) => Some(std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?),
        None => None,
    };
    if let Some(p) = &args.replay {
        let mut bytes = Vec::new();
        std::fs::File::open(p)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        consume(&bytes, &mut reader, &mut rep, &names, args.quiet, args.max_reports);
    } else {
        let mut link: Box<dyn Link> = open(&args.link, Duration::from_millis(50))?;
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if args.seconds > 0 && t0.elapsed().as_secs() >= args.seconds {
                break;
            }
            let n = match read_some(link.as_mut(), &mut buf) {
                Ok(n) => n,
                Err(_) => break, // link closed: finish with what arrived
            };
            if let Some(f) = &mut record {
                f.write_all(&buf[..n]).map_err(|e| format!("recording failed: {e}"))?;
            }
            consume(&buf[..n], &mut reader, &mut rep, &names, args.quiet, args.max_reports);
        }
    }
    println!(
        "ground: {} telemetry frames, {} heartbeats, {} bad frames",
        rep.telemetry.len(),
        rep.heartbeats,
        rep.bad_frames
    );
    if rep.not_kept > 0 {
        println!(
            "ground: {} reports beyond --max-reports {} were shown but not kept (the CSV and map cover the first {})",
            rep.not_kept, args.max_reports, args.max_reports
        );
    }
    if let Some(p) = &args.csv {
        let mut s = String::from("frame_id,tile_index,x,y,size,class,class_name,confidence,q,latency_us,arena_hwm\n");
        for t in &rep.telemetry {
            let top = t.top[0];
            let name = csv_field(names.get(top.class as usize).map(String::as_str).unwrap_or(""));
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{:.6},{},{},{}",
                t.frame_id,
                t.tile_index,
                t.tile_x,
                t.tile_y,
                t.tile_size,
                top.class,
                name,
                top.confidence,
                top.q,
                t.latency_us,
                t.arena_hwm
            );
        }
        rsim_model::write::write_atomic(p, s.as_bytes()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    if let Some(p) = &args.map {
        let tiles: Vec<TileClass> = rep
            .telemetry
            .iter()
            .filter(|t| t.count > 0)
            .map(|t| TileClass {
                x: t.tile_x as u32,
                y: t.tile_y as u32,
                size: t.tile_size as u32,
                class: t.top[0].class,
            })
            .collect();
        let (w, h) = write_png(p, &tiles, args.map_scale, args.map_max_side)?;
        println!("ground: class map {w}x{h} written to {}", p.display());
    }
    Ok(rep)
}
