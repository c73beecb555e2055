//! The engine's failure type. Flow outcomes (a stale id, a queued send) are
//! enums of their own, not errors.

use std::fmt;
use std::io;

/// Why the engine could not do what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range; the text names the field.
    Config(String),
    /// A channel definition is invalid (duplicate path, bad routing key...).
    Channel(String),
    /// A socket or thread could not be set up.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Channel(m) => write!(f, "invalid channel: {m}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
