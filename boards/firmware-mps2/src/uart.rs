//! CMSDK APB UART (the UART0 of mps2-an386 and mps3-an547) as an `embedded-io` link: `Write` for
//! telemetry, and `Read` + `ReadReady` for the receiver firmware's flash transfers. QEMU routes it
//! to the host with `-serial` (a file, a pipe or a TCP socket).

use core::ptr::{read_volatile, write_volatile};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// One CMSDK APB UART, polled: it has a one-byte buffer each way and no FIFO. (QEMU holds further
/// received bytes back until the buffer is read; real hardware would overrun, so a real board's
/// HAL reads by interrupt or DMA into a ring buffer behind the same traits.)
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enables the transmitter and receiver at `base` with the given baud divisor (≥ 16, the
    /// hardware minimum).
    ///
    /// # Safety
    /// `base` must be the register block of a CMSDK APB UART that nothing else drives.
    pub unsafe fn new(base: usize, bauddiv: u32) -> Self {
        let u = Uart { base };
        // SAFETY: the caller guarantees `base` is a CMSDK UART register block we own.
        unsafe {
            u.write_reg(BAUDDIV, bauddiv.max(16));
            u.write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        }
        u
    }

    unsafe fn write_reg(&self, off: usize, v: u32) {
        // SAFETY: `base + off` is a 32-bit register of the UART (see `new`).
        unsafe { write_volatile((self.base + off) as *mut u32, v) }
    }

    fn read_state(&self) -> u32 {
        // SAFETY: STATE is a readable 32-bit register of the UART (see `new`); reading has no side effect.
        unsafe { read_volatile((self.base + STATE) as *const u32) }
    }

    fn put(&mut self, b: u8) {
        while self.read_state() & STATE_TX_FULL != 0 {}
        // SAFETY: DATA is the transmit register; the buffer is empty, so the byte is not lost.
        unsafe { self.write_reg(DATA, b as u32) }
    }
}

impl embedded_io::ReadReady for Uart {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(self.read_state() & STATE_RX_FULL != 0)
    }
}

impl embedded_io::Read for Uart {
    /// Reads the bytes waiting (at least one: blocks until one arrives, as `embedded_io` asks).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        while n < buf.len() {
            if self.read_state() & STATE_RX_FULL == 0 {
                if n > 0 {
                    break;
                }
                continue;
            }
            // SAFETY: DATA is the receive register; reading it takes the byte and frees the buffer.
            buf[n] = unsafe { read_volatile((self.base + DATA) as *const u32) } as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        buf.iter().for_each(|&b| self.put(b));
        Ok(buf.len())
    }
    /// Waits until the last byte has left the transmit buffer.
    fn flush(&mut self) -> Result<(), Self::Error> {
        while self.read_state() & STATE_TX_FULL != 0 {}
        Ok(())
    }
}
