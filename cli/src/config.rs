//! `ekms config check FILE`: checks a config file against the options of `ekms dev`,
//! `ekms-parent` or `ekms-enclave` (`ekms_shared::config_file`), as the program would read it
//! at start, without starting anything.

use std::path::PathBuf;

use clap::CommandFactory as _;
use ekms_shared::config_file;

/// `ekms config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a config file: every key an option of the program, every value one it takes.
    /// Refused with the line and the key of the first problem.
    Check(CheckArgs),
}

/// `ekms config check` options.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The TOML file.
    pub file: PathBuf,
    /// The program that reads it.
    #[arg(long = "for", value_enum, default_value_t = Program::EkmsDev)]
    pub program: Program,
}

/// A program that takes `--config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Program {
    /// `ekms dev`.
    EkmsDev,
    /// `ekms-parent`.
    EkmsParent,
    /// `ekms-enclave` (mock mode).
    EkmsEnclave,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::EkmsDev => "ekms dev",
            Program::EkmsParent => "ekms-parent",
            Program::EkmsEnclave => "ekms-enclave",
        }
    }
}

/// Runs `ekms config ...`; `ekms` is the operator tool's own command (for `ekms dev`'s
/// options). Returns the report to print.
///
/// # Errors
/// A file that cannot be read or is refused ([`config_file::ConfigError`]).
pub fn run(
    command: &ConfigCommand,
    ekms: clap::Command,
) -> Result<serde_json::Value, config_file::ConfigError> {
    match command {
        ConfigCommand::Check(args) => {
            let (cmd, sub) = match args.program {
                Program::EkmsDev => (ekms, Some("dev")),
                Program::EkmsParent => (ekms_parent::args::Args::command(), None),
                Program::EkmsEnclave => (ekms_enclave::Args::command(), None),
            };
            let settings = config_file::load(&cmd, sub, &args.file)?;
            let values: serde_json::Map<String, serde_json::Value> = settings
                .into_iter()
                .map(|s| (s.key, serde_json::json!(s.values)))
                .collect();
            Ok(serde_json::json!({
                "File": args.file.display().to_string(),
                "For": args.program.name(),
                "Valid": true,
                "Settings": values,
            }))
        }
    }
}
