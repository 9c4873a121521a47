//! CMSDK APB UART (the UART0 of mps2-an386 and mps3-an547) as an `embedded_io::Write` link.
//! QEMU routes it to the host with `-serial` (a file, a pipe or a TCP socket).

use core::ptr::{read_volatile, write_volatile};

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_EN: u32 = 1 << 0;

/// The transmitter of one CMSDK APB UART. Polled: the UART has a one-byte buffer and no FIFO.
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enables the transmitter at `base` with the given baud divisor (≥ 16, the hardware minimum).
    ///
    /// # Safety
    /// `base` must be the register block of a CMSDK APB UART that nothing else drives.
    pub unsafe fn new(base: usize, bauddiv: u32) -> Self {
        let u = Uart { base };
        // SAFETY: the caller guarantees `base` is a CMSDK UART register block we own.
        unsafe {
            u.write_reg(BAUDDIV, bauddiv.max(16));
            u.write_reg(CTRL, CTRL_TX_EN);
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
