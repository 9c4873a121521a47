//! Flash emulations (std): RAM-backed with power-cut injection, and file-backed for Linux boards.
//!
//! Both follow NOR semantics: erase sets bytes to 0xFF, a write can only clear bits (new = old & data),
//! and offsets/lengths must be aligned to `W` (write) and `E` (erase).

use super::MappedFlash;
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Error of the emulated flashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmuError {
    NotAligned,
    OutOfBounds,
    /// Power was cut during (or before) this operation; the device is dead until `revive`.
    PowerCut,
    /// The backing file could not be written.
    Io,
}

impl NorFlashError for EmuError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            EmuError::NotAligned => NorFlashErrorKind::NotAligned,
            EmuError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            EmuError::PowerCut | EmuError::Io => NorFlashErrorKind::Other,
        }
    }
}

/// RAM flash of `W`-byte writes and `E`-byte erase pages.
#[derive(Clone, Debug)]
pub struct RamFlash<const W: usize = 4, const E: usize = 4096> {
    mem: Vec<u8>,
    /// Storage bytes (written or erased) left before the power is cut; `None` = never.
    budget: Option<u64>,
    dead: bool,
    /// Storage bytes written or erased so far (for choosing cut points).
    pub bytes_touched: u64,
}

impl<const W: usize, const E: usize> RamFlash<W, E> {
    /// An erased flash of `len` bytes (rounded up to the erase size).
    pub fn new(len: usize) -> Self {
        RamFlash { mem: vec![0xFF; len.div_ceil(E) * E], budget: None, dead: false, bytes_touched: 0 }
    }
    /// Cuts the power once `bytes` more storage bytes have been written or erased.
    pub fn cut_power_after(&mut self, bytes: u64) {
        self.budget = Some(bytes);
    }
    /// Power back on: the contents are whatever the cut left.
    pub fn revive(&mut self) {
        self.dead = false;
        self.budget = None;
    }
    pub fn is_dead(&self) -> bool {
        self.dead
    }
    /// Raw contents (tests flip bits here to model decay).
    pub fn mem_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }
    pub fn mem(&self) -> &[u8] {
        &self.mem
    }

    /// Applies `f` to bytes `[from, to)` one at a time until the power budget runs out.
    fn apply(&mut self, from: usize, to: usize, mut f: impl FnMut(usize, &mut u8)) -> Result<(), EmuError> {
        if self.dead {
            return Err(EmuError::PowerCut);
        }
        for i in from..to {
            if let Some(b) = &mut self.budget {
                if *b == 0 {
                    self.dead = true;
                    return Err(EmuError::PowerCut);
                }
                *b -= 1;
            }
            f(i - from, &mut self.mem[i]);
            self.bytes_touched += 1;
        }
        Ok(())
    }
}

impl<const W: usize, const E: usize> ErrorType for RamFlash<W, E> {
    type Error = EmuError;
}

fn check(len: usize, offset: u32, n: usize, align: usize) -> Result<(usize, usize), EmuError> {
    let from = offset as usize;
    let to = from.checked_add(n).ok_or(EmuError::OutOfBounds)?;
    if to > len {
        return Err(EmuError::OutOfBounds);
    }
    if !from.is_multiple_of(align) || !n.is_multiple_of(align) {
        return Err(EmuError::NotAligned);
    }
    Ok((from, to))
}

impl<const W: usize, const E: usize> ReadNorFlash for RamFlash<W, E> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), EmuError> {
        if self.dead {
            return Err(EmuError::PowerCut);
        }
        let (from, to) = check(self.mem.len(), offset, bytes.len(), 1)?;
        bytes.copy_from_slice(&self.mem[from..to]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl<const W: usize, const E: usize> NorFlash for RamFlash<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), EmuError> {
        let n = (to as usize).checked_sub(from as usize).ok_or(EmuError::OutOfBounds)?;
        let (a, b) = check(self.mem.len(), from, n, E)?;
        self.apply(a, b, |_, m| *m = 0xFF)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), EmuError> {
        let (a, b) = check(self.mem.len(), offset, bytes.len(), W)?;
        self.apply(a, b, |i, m| *m &= bytes[i])
    }
}

impl<const W: usize, const E: usize> MappedFlash for RamFlash<W, E> {
    fn mapped(&self, offset: u32, len: u32) -> Option<&[u8]> {
        self.mem.get(offset as usize..(offset as usize).checked_add(len as usize)?)
    }
}

/// Flash kept in a file (Linux boards, emulators): every write and erase goes to the file at once,
/// and a RAM mirror serves reads and `mapped`.
#[derive(Debug)]
pub struct FileFlash<const W: usize = 4, const E: usize = 4096> {
    ram: RamFlash<W, E>,
    file: File,
}

impl<const W: usize, const E: usize> FileFlash<W, E> {
    /// Opens `path`, creating an erased flash of `len` bytes if it does not exist.
    pub fn open(path: &Path, len: usize) -> std::io::Result<Self> {
        let mut ram = RamFlash::new(len);
        if path.exists() {
            let bytes = std::fs::read(path)?;
            if bytes.len() != ram.mem.len() {
                return Err(std::io::Error::other(format!(
                    "{} holds {} bytes, expected a {}-byte flash image",
                    path.display(),
                    bytes.len(),
                    ram.mem.len()
                )));
            }
            ram.mem = bytes;
            Ok(FileFlash { ram, file: std::fs::OpenOptions::new().read(true).write(true).open(path)? })
        } else {
            let mut file = File::create(path)?;
            file.write_all(&ram.mem)?;
            file.sync_all()?;
            Ok(FileFlash { ram, file })
        }
    }

    fn sync(&mut self, from: usize, to: usize) -> Result<(), EmuError> {
        self.file.seek(SeekFrom::Start(from as u64)).map_err(|_| EmuError::Io)?;
        self.file.write_all(&self.ram.mem[from..to]).map_err(|_| EmuError::Io)?;
        self.file.sync_data().map_err(|_| EmuError::Io)
    }
}

impl<const W: usize, const E: usize> ErrorType for FileFlash<W, E> {
    type Error = EmuError;
}

impl<const W: usize, const E: usize> ReadNorFlash for FileFlash<W, E> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), EmuError> {
        self.ram.read(offset, bytes)
    }
    fn capacity(&self) -> usize {
        self.ram.capacity()
    }
}

impl<const W: usize, const E: usize> NorFlash for FileFlash<W, E> {
    const WRITE_SIZE: usize = W;
    const ERASE_SIZE: usize = E;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), EmuError> {
        self.ram.erase(from, to)?;
        self.sync(from as usize, to as usize)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), EmuError> {
        self.ram.write(offset, bytes)?;
        self.sync(offset as usize, offset as usize + bytes.len())
    }
}

impl<const W: usize, const E: usize> MappedFlash for FileFlash<W, E> {
    fn mapped(&self, offset: u32, len: u32) -> Option<&[u8]> {
        self.ram.mapped(offset, len)
    }
}
