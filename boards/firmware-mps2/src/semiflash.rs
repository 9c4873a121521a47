//! The receiver's "NOR flash": a RAM region the runtime reads models from in place (as it would
//! memory-mapped flash), written through to a file on the host over semihosting so the slots and
//! the boot record survive a QEMU restart, as flash survives a reset. A restart in the middle of a
//! write leaves the file as far as the write got, like a power cut on real flash.
//!
//! NOR semantics as `rsim_boards::flash::emu`: erase sets 0xFF, a write can only clear bits, and
//! offsets/lengths are aligned to the write and erase sizes. A real board implements the same
//! `embedded-storage` traits over its flash controller.

use cortex_m_semihosting::{nr, syscall};
use embedded_storage::nor_flash::{ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use rsim_boards::flash::MappedFlash;

/// A file on the host, opened over semihosting.
pub struct HostFile {
    fd: usize,
}

impl HostFile {
    /// Opens `name` (NUL-terminated) in semihosting `mode` (`nr::open::*`).
    pub fn open(name: &str, mode: usize) -> Option<HostFile> {
        let bytes = name.as_bytes();
        if bytes.last() != Some(&0) {
            return None;
        }
        // SAFETY: OPEN takes a pointer to the NUL-terminated name, the mode and the name's length
        // without the NUL; `bytes` outlives the call.
        let fd = unsafe { syscall!(OPEN, bytes.as_ptr(), mode, bytes.len() - 1) } as isize;
        (fd >= 0).then_some(HostFile { fd: fd as usize })
    }

    /// Length of the file in bytes.
    pub fn len(&self) -> Option<usize> {
        // SAFETY: FLEN takes the open handle.
        let n = unsafe { syscall!(FLEN, self.fd) } as isize;
        (n >= 0).then_some(n as usize)
    }

    pub fn seek(&mut self, pos: usize) -> bool {
        // SAFETY: SEEK takes the open handle and an absolute position.
        unsafe { syscall!(SEEK, self.fd, pos) == 0 }
    }

    /// Reads exactly `buf.len()` bytes at the current position.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> bool {
        // SAFETY: READ writes at most `buf.len()` bytes into `buf`; it returns the bytes NOT read.
        let left = unsafe { syscall!(READ, self.fd, buf.as_mut_ptr(), buf.len()) };
        left == 0
    }

    /// Writes all of `buf` at the current position.
    pub fn write_all(&mut self, buf: &[u8]) -> bool {
        // SAFETY: WRITE reads `buf.len()` bytes from `buf`; it returns the bytes NOT written.
        let left = unsafe { syscall!(WRITE, self.fd, buf.as_ptr(), buf.len()) };
        left == 0
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        // SAFETY: CLOSE takes the open handle, which is not used again.
        unsafe { syscall!(CLOSE, self.fd) };
    }
}

/// Error of the semihosted flash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemiFlashError {
    NotAligned,
    OutOfBounds,
    /// The host file could not be written.
    Io,
}

impl NorFlashError for SemiFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SemiFlashError::NotAligned => NorFlashErrorKind::NotAligned,
            SemiFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SemiFlashError::Io => NorFlashErrorKind::Other,
        }
    }
}

pub const WRITE_SIZE: usize = 4;
pub const ERASE_SIZE: usize = 4096;

/// Flash of `len` bytes mirrored at `base` (RAM nothing else uses) and kept in a host file.
pub struct SemiFlash {
    base: *mut u8,
    len: usize,
    file: HostFile,
}

impl SemiFlash {
    /// Opens `name` (NUL-terminated) on the host: loads it into the mirror, or creates an erased
    /// flash when the file is missing. A file of another size is refused (another board's image).
    ///
    /// # Safety
    /// `[base, base + len)` must be RAM that nothing else reads or writes while the flash lives,
    /// except through [`MappedFlash::mapped`] slices of bytes that are not being written.
    pub unsafe fn open(base: usize, len: usize, name: &str) -> Result<SemiFlash, &'static str> {
        let base = base as *mut u8;
        // SAFETY: the caller hands over `[base, base + len)`.
        let mirror = unsafe { core::slice::from_raw_parts_mut(base, len) };
        let file = match HostFile::open(name, nr::open::RW_BINARY) {
            Some(mut f) => {
                if f.len() != Some(len) {
                    return Err("the host flash file has the wrong size for this board");
                }
                if !f.seek(0) || !f.read_exact(mirror) {
                    return Err("cannot read the host flash file");
                }
                f
            }
            None => {
                let mut f =
                    HostFile::open(name, nr::open::RW_TRUNC_BINARY).ok_or("cannot create the host flash file")?;
                mirror.fill(0xFF);
                if !f.write_all(mirror) {
                    return Err("cannot write the host flash file");
                }
                f
            }
        };
        Ok(SemiFlash { base, len, file })
    }

    fn range(&self, offset: u32, n: usize, align: usize) -> Result<(usize, usize), SemiFlashError> {
        let from = offset as usize;
        let to = from.checked_add(n).ok_or(SemiFlashError::OutOfBounds)?;
        if to > self.len {
            return Err(SemiFlashError::OutOfBounds);
        }
        if from % align != 0 || n % align != 0 {
            return Err(SemiFlashError::NotAligned);
        }
        Ok((from, to))
    }

    /// Writes mirror bytes `[from, to)` through to the host file.
    fn sync(&mut self, from: usize, to: usize) -> Result<(), SemiFlashError> {
        // SAFETY: `[from, to)` is inside the region (checked by `range`); nothing writes it meanwhile.
        let bytes = unsafe { core::slice::from_raw_parts(self.base.add(from), to - from) };
        if self.file.seek(from) && self.file.write_all(bytes) {
            Ok(())
        } else {
            Err(SemiFlashError::Io)
        }
    }
}

impl ErrorType for SemiFlash {
    type Error = SemiFlashError;
}

impl ReadNorFlash for SemiFlash {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SemiFlashError> {
        let (from, _) = self.range(offset, bytes.len(), 1)?;
        // SAFETY: in range (checked); the mirror is not written during this copy.
        let src = unsafe { core::slice::from_raw_parts(self.base.add(from), bytes.len()) };
        bytes.copy_from_slice(src);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.len
    }
}

impl NorFlash for SemiFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = ERASE_SIZE;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), SemiFlashError> {
        let n = (to as usize).checked_sub(from as usize).ok_or(SemiFlashError::OutOfBounds)?;
        let (a, b) = self.range(from, n, ERASE_SIZE)?;
        // SAFETY: in range; the updater never erases the active slot, which is all a `mapped` slice covers.
        unsafe { core::ptr::write_bytes(self.base.add(a), 0xFF, b - a) };
        self.sync(a, b)
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SemiFlashError> {
        let (a, b) = self.range(offset, bytes.len(), WRITE_SIZE)?;
        for (i, &v) in bytes.iter().enumerate() {
            // SAFETY: `a + i < b <= len`; NOR writes only clear bits.
            unsafe {
                let p = self.base.add(a + i);
                p.write_volatile(p.read_volatile() & v);
            }
        }
        self.sync(a, b)
    }
}

impl MappedFlash for SemiFlash {
    fn mapped(&self, offset: u32, len: u32) -> Option<&[u8]> {
        let from = offset as usize;
        let to = from.checked_add(len as usize)?;
        // SAFETY: in range; callers read images that are not written while they hold the slice.
        (to <= self.len).then(|| unsafe { core::slice::from_raw_parts(self.base.add(from), len as usize) })
    }
}
