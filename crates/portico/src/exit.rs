//! Exit statuses (SPEC.md): 0 clean stop, 1 invalid config, 2 runtime failure, always with a
//! one-line reason on stderr.

use std::fmt;
use std::process::ExitCode;

/// Why the process stops with a non-zero status.
#[derive(Debug)]
pub enum Failure {
    /// The configuration is invalid (exit 1). The text is printed as is (diagnostics).
    InvalidConfig(String),
    /// Anything else that stops the process (exit 2): a port cannot be bound, no privileges...
    Runtime(anyhow::Error),
}

impl Failure {
    pub fn code(&self) -> ExitCode {
        match self {
            Failure::InvalidConfig(_) => ExitCode::from(1),
            Failure::Runtime(_) => ExitCode::from(2),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::InvalidConfig(text) => f.write_str(text.trim_end()),
            // `{:#}` prints the anyhow context chain on one line: "a: b: c".
            Failure::Runtime(err) => write!(f, "portico: {err:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Runtime(err)
    }
}
