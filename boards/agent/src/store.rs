//! `--flash`: the agent keeps its models the way a microcontroller does, and receives new ones over
//! its link with `rsim flash`.
//!
//! The store is one file holding the A/B layout of `rsim_boards::flash` (two boot-record pages, two
//! slots; `FileFlash` writes every erase and write through to the file and syncs it). A transfer
//! writes the inactive slot; only a verified image (hash, signature and version when keys are
//! given, decode, limits, the engine built and the model's test vector reproduced) is activated, by
//! a new boot-record copy: a power cut at any point leaves the old model or the new one. The same
//! code runs on the Cortex-M receiver firmware, so a Linux board and a microcontroller answer
//! `rsim flash` identically.

use rsim_boards::field::link::{read_some, Link};
use rsim_boards::flash::emu::FileFlash;
use rsim_boards::flash::sign::TrustPolicy;
use rsim_boards::flash::{Activated, BoardLimits, FlashError, Layout, LinkService, MappedFlash, Updater};
use rsim_boards::onboard::OwnedSelfTest;
use std::net::TcpListener;
use std::path::Path;

const ERASE: usize = 4096;

/// The agent's model store and the link service that fills it.
pub struct Store {
    service: LinkService<FileFlash<4, ERASE>, OwnedSelfTest>,
}

/// How the store is set up (from the command line).
pub struct StoreConfig<'a> {
    pub path: &'a Path,
    pub size: usize,
    pub keys: &'static [[u8; 32]],
    pub confirm_after: u32,
    pub max_arena: usize,
    pub max_input_bytes: u32,
    pub max_macs: Option<u64>,
}

impl Store {
    /// Opens (or creates, erased) the store and runs boot verification: an image on trial when the
    /// agent last stopped is reverted, one that no longer verifies is rolled back.
    pub fn open(c: &StoreConfig<'_>) -> Result<Store, String> {
        let size = c.size.div_ceil(ERASE) * ERASE;
        let flash = FileFlash::<4, ERASE>::open(c.path, size)
            .map_err(|e| format!("cannot open the model store {}: {e}", c.path.display()))?;
        let layout = Layout::split(0, size as u32, ERASE as u32).map_err(|e| format!("model store: {e}"))?;
        let limits = BoardLimits {
            trust: TrustPolicy { keys: c.keys, allow_downgrade: false },
            confirm_after: Some(c.confirm_after),
            max_macs: c.max_macs,
            ..BoardLimits::new(c.max_arena as u32, c.max_input_bytes, false)
        };
        // The self-test's arena: what the largest acceptable model may plan (allocated lazily by the OS).
        let selftest = OwnedSelfTest(vec![0u8; c.max_arena + 16]);
        let updater = Updater::new(flash, layout, limits, selftest).map_err(|e| format!("model store: {e}"))?;
        let mut store = Store { service: LinkService::new(updater) };
        match store.service.updater.boot() {
            Ok(b) => eprintln!(
                "rsim-agent: model store {}: slot {} (boot record {}){}{}{}",
                c.path.display(),
                slot_name(b.slot),
                b.seq,
                if b.trial { ", on trial" } else { "" },
                if b.reverted { ", reverted an unconfirmed trial model" } else { "" },
                if b.rolled_back { ", rolled back from a model that no longer verifies" } else { "" },
            ),
            Err(FlashError::NoRecord) => {
                eprintln!("rsim-agent: model store {} is empty: waiting for `rsim flash`", c.path.display())
            }
            Err(e) => eprintln!("rsim-agent: model store {}: {e}; waiting for `rsim flash`", c.path.display()),
        }
        Ok(store)
    }

    /// The active model's `.rsm` bytes (a signed image without its envelope), or `None` when the
    /// store holds none the runtime can take.
    pub fn active_model(&mut self) -> Result<Option<(Vec<u8>, u8, u32)>, String> {
        let Some(img) = self.service.active().map_err(|e| format!("model store: {e}"))? else { return Ok(None) };
        let Some(bytes) = self.service.updater.flash().mapped(img.offset, img.len) else { return Ok(None) };
        match rsim_boards::flash::sign::split(bytes) {
            Ok(i) => Ok(Some((i.rsm().to_vec(), img.slot, img.seq))),
            Err(e) => {
                eprintln!("rsim-agent: the active image does not split: {e}");
                Ok(None)
            }
        }
    }

    /// Whether a transfer is in progress.
    pub fn busy(&self) -> bool {
        self.service.updater.busy()
    }

    /// One successful inference of the running model (trial images are confirmed by count).
    pub fn inference_ok(&mut self) {
        match self.service.updater.inference_ok() {
            Ok(Some((slot, seq))) => {
                eprintln!("rsim-agent: model in slot {} confirmed (boot record {seq})", slot_name(slot))
            }
            Ok(None) => {}
            Err(e) => eprintln!("rsim-agent: confirming the model failed: {e}"),
        }
    }

    /// Hands received bytes to the flash protocol; replies go back on `link`.
    pub fn receive(&mut self, bytes: &[u8], link: &mut dyn Link) -> Option<Activated> {
        let mut tx = StdTx(link);
        match self.service.receive(bytes, &mut tx) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("rsim-agent: link write failed: {e}");
                None
            }
        }
    }
}

pub fn slot_name(slot: u8) -> char {
    if slot == 0 {
        'A'
    } else {
        'B'
    }
}

/// A std link as an `embedded_io::Write`.
struct StdTx<'a>(&'a mut dyn Link);

impl embedded_io::ErrorType for StdTx<'_> {
    type Error = std::io::Error;
}

impl embedded_io::Write for StdTx<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, std::io::Error> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> Result<(), std::io::Error> {
        self.0.flush()
    }
}

/// The board's end of a TCP link that outlives its clients: `rsim flash` connects, leaves, and
/// `rsim ground` (or the next flash) connects next. Never blocks.
pub struct Listener {
    listener: TcpListener,
}

impl Listener {
    pub fn bind(addr: &str) -> Result<Listener, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        eprintln!("rsim-agent: listening on {addr} for rsim flash / rsim ground");
        Ok(Listener { listener })
    }

    /// A client that connected since the last call, if any.
    pub fn accept(&self) -> Option<Box<dyn Link>> {
        let (s, _) = self.listener.accept().ok()?;
        s.set_nonblocking(false).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_millis(1))).ok()?;
        s.set_nodelay(true).ok();
        Some(Box::new(s))
    }
}

/// Reads what the link has (without waiting longer than its read timeout). `None`: the link closed.
pub fn read_link(link: &mut dyn Link, buf: &mut [u8]) -> Option<usize> {
    read_some(link, buf).ok()
}
