//! Logging of the three binaries (`ekms-parent`, `ekms-enclave`, `ekms`): one setup, chosen
//! by `--log-format`, filtered by `EKMS_LOG` (tracing's `EnvFilter` directives, default
//! `info`), written to stderr.
//!
//! - `text`: one human-readable line per event; ANSI colours only when stderr is a terminal,
//!   so a file, a pipe or the journal gets plain text.
//! - `json`: one JSON object per line (`timestamp`, `level`, `target`, `message` and the
//!   event's fields at the top level), for log shippers (Vector, Fluent Bit, CloudWatch).
//!
//! Does not: decide what is logged. An enclave's log leaves it only through its console, which
//! the parent reads (a debug-mode Nitro enclave): what the enclave logs must be fit for the
//! parent to see (`enclave/src/api/server.rs`, the request line).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The variable that holds the filter directives (`info`, `warn,ekms::request=info`, ...).
pub const LOG_ENV: &str = "EKMS_LOG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours on a terminal only).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name `--log-format` takes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `EKMS_LOG` holds directives tracing cannot parse.
    #[error("invalid {LOG_ENV}={directives:?}")]
    Filter {
        /// What it holds.
        directives: String,
        /// tracing's reason.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// `EKMS_LOG` is not UTF-8.
    #[error("{LOG_ENV} is not valid UTF-8")]
    NotUnicode,
    /// A logger was installed already (a second call).
    #[error("a logger is already installed")]
    AlreadyInstalled(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The filter `EKMS_LOG` asks for (`info` when unset).
///
/// # Errors
/// When `EKMS_LOG` is not UTF-8 or does not parse.
pub fn filter() -> Result<EnvFilter, LoggingError> {
    match std::env::var(LOG_ENV) {
        Ok(directives) => EnvFilter::try_new(&directives)
            .map_err(|source| LoggingError::Filter { directives, source }),
        Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new("info")),
        Err(std::env::VarError::NotUnicode(_)) => Err(LoggingError::NotUnicode),
    }
}

/// Installs the process's logger: `format` to stderr, filtered by `EKMS_LOG`.
///
/// # Errors
/// As [`filter`]; and when a logger is installed already.
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    let filter = filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        // Colour only on a terminal: logs written to a file or a journal stay plain text.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(LoggingError::AlreadyInstalled)
}
