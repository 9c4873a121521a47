//! Opening the board link: a serial port, a TCP connection, or a TCP listener (one client).

use clap::Args;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A byte link with a read timeout (a read that times out returns `Ok(0)` or a `TimedOut` error).
pub trait Link: Read + Write + Send {}
impl<T: Read + Write + Send> Link for T {}

/// Where the board is.
#[derive(Args, Clone, Debug, Default)]
pub struct LinkArgs {
    /// Serial device of the board, e.g. /dev/ttyUSB0 or /dev/ttyACM0.
    #[arg(long, conflicts_with_all = ["tcp", "listen"])]
    pub port: Option<String>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Connect to a board (or a serial-to-TCP bridge / emulator) at host:port.
    #[arg(long, conflicts_with = "listen")]
    pub tcp: Option<String>,
    /// Listen on host:port and take the first board that connects.
    #[arg(long)]
    pub listen: Option<String>,
}

/// Opens the link with a short read timeout so callers can poll.
pub fn open(a: &LinkArgs, read_timeout: Duration) -> Result<Box<dyn Link>, String> {
    if let Some(p) = &a.port {
        let port = serialport::new(p, a.baud)
            .timeout(read_timeout)
            .open()
            .map_err(|e| format!("cannot open serial port {p} at {} baud: {e}", a.baud))?;
        return Ok(Box::new(port));
    }
    let stream = if let Some(addr) = &a.tcp {
        TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?
    } else if let Some(addr) = &a.listen {
        let l = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        eprintln!("waiting for a board to connect on {addr} ...");
        l.accept().map_err(|e| format!("accept on {addr} failed: {e}"))?.0
    } else {
        return Err("no link given: pass --port <serial device>, --tcp <host:port> or --listen <host:port>".into());
    };
    stream.set_read_timeout(Some(read_timeout)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).ok();
    Ok(Box::new(stream))
}

/// Reads what is available; timeouts read as 0 bytes, a closed link as an error.
pub fn read_some(link: &mut dyn Link, buf: &mut [u8]) -> Result<usize, String> {
    match link.read(buf) {
        Ok(0) => Err("link closed by the other side".into()),
        Ok(n) => Ok(n),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => Ok(0),
        Err(e) => Err(format!("link read failed: {e}")),
    }
}
