//! Error kinds shared by every boards error (embedded-hal's habit): each module keeps a precise
//! error type and maps it to a kind, so retry and rollback logic can match kinds.

use core::fmt;

/// Coarse classification of a boards error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bytes on the link did not form a valid frame (COBS, CRC, version, decode, overflow).
    Framing,
    /// The peer refused a request.
    Nack,
    /// No answer in time.
    Timeout,
    /// The link (serial port, socket, writer) failed.
    Link,
    /// Flash storage failed or refused an access.
    Storage,
    /// An image did not verify (hash, model decode, self-test).
    Verify,
    /// The model does not fit this board (too large, arena or input too big).
    WrongBoard,
    /// An argument or a protocol step out of order.
    Protocol,
    /// Anything else.
    Other,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Framing => "bad frame on the link",
            ErrorKind::Nack => "refused by the peer",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Link => "link failure",
            ErrorKind::Storage => "storage failure",
            ErrorKind::Verify => "image verification failed",
            ErrorKind::WrongBoard => "model does not fit this board",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Other => "other error",
        })
    }
}

/// Implemented by every boards error type.
pub trait Error: fmt::Debug {
    /// The coarse kind of this error.
    fn kind(&self) -> ErrorKind;
}
