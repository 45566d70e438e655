//! Settings from a config file and the environment, for the options of `ekms-parent`,
//! `ekms-enclave` and `ekms dev`.
//!
//! Precedence: the command line, then `EKMS_<NAME>` in the environment (`--data-dir` is
//! `EKMS_DATA_DIR`), then the TOML file `--config FILE` (or `EKMS_CONFIG`) names, then the
//! option's default. The file's keys are the long options' names and nothing else:
//!
//! ```toml
//! listen = "127.0.0.1:4599"
//! data-dir = "/var/lib/ekms-dev"
//! tls = true                              # a flag: true or false
//! quota = ["grants-per-key=100"]          # a repeatable option: an array
//! enclave-memory-mib = 2048               # numbers as integers (or strings)
//! ```
//!
//! The options are read from the binary's own `clap` definition, so every flag is settable
//! and a new one needs nothing here. A file is checked whole before anything starts: an
//! unknown key, a value of the wrong type or one the option refuses is an error naming the
//! line and the key ([`ConfigError`]). The file's values become the options' defaults, which
//! is what puts them below the environment and the command line.
//!
//! Does not: read a file in a real enclave (`ekms-enclave` takes `--config` in mock mode only:
//! an enclave's settings are in its measured image).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};

/// The variable that names a config file when `--config` does not.
pub const CONFIG_ENV: &str = "EKMS_CONFIG";

/// Options that are not settings: never read from a file.
const NOT_SETTINGS: &[&str] = &["help", "version", "config"];

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("{file}, line {line}: not TOML: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// Where (1-based).
        line: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// A key that names no option.
    #[error("{file}, line {line}: unknown key `{key}` (the keys are: {known})")]
    UnknownKey {
        /// The file.
        file: String,
        /// Where (1-based).
        line: usize,
        /// The key.
        key: String,
        /// The keys there are, comma-separated.
        known: String,
    },
    /// A value of the wrong TOML type.
    #[error("{file}, line {line}: `{key}` must be {expected}, not {found}")]
    WrongType {
        /// The file.
        file: String,
        /// Where (1-based).
        line: usize,
        /// The key.
        key: String,
        /// What it takes.
        expected: &'static str,
        /// What it was given.
        found: &'static str,
    },
    /// A value the option refuses.
    #[error("{file}, line {line}: `{key}` = {value:?}: {reason}")]
    InvalidValue {
        /// The file.
        file: String,
        /// Where (1-based).
        line: usize,
        /// The key.
        key: String,
        /// The value, as the option would read it.
        value: String,
        /// The option's reason.
        reason: String,
    },
}

/// Whose option a setting is: the command's own, or (for a subcommand such as `ekms dev`) a
/// global option of the command above it (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Own,
    Global,
}

/// One checked setting of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key (the long option's name).
    pub key: String,
    /// Its line in the file (1-based).
    pub line: usize,
    /// Its values, as on a command line (one, or several for a repeatable option).
    pub values: Vec<String>,
    id: String,
    scope: Scope,
    flag: bool,
}

/// The options a file may set for `cmd` (or for its subcommand `sub`, with `cmd`'s global
/// options), by long name.
fn settable<'c>(cmd: &'c Command, sub: Option<&str>) -> Vec<(&'c Arg, Scope)> {
    let named = |arg: &&Arg| {
        arg.get_long()
            .is_some_and(|long| !NOT_SETTINGS.contains(&long))
    };
    match sub.and_then(|name| cmd.find_subcommand(name)) {
        None => cmd
            .get_arguments()
            .filter(named)
            .map(|a| (a, Scope::Own))
            .collect(),
        Some(subcommand) => subcommand
            .get_arguments()
            .filter(named)
            .map(|a| (a, Scope::Own))
            .chain(
                cmd.get_arguments()
                    .filter(|a| a.is_global_set())
                    .filter(named)
                    .map(|a| (a, Scope::Global)),
            )
            .collect(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A string or an integer, as a command line would give it; else the TOML type found.
fn scalar(value: &DeValue<'_>) -> Result<String, &'static str> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|_| "an integer out of range"),
        other => Err(type_name(other)),
    }
}

/// Whether the option is a flag (takes no value: true or false in a file).
fn is_flag(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// Runs `values` through the option's own parser (a copy of it, alone in a command), so a
/// file's value is refused for the reason the command line would refuse it.
fn validate(arg: &Arg, long: &str, values: &[String]) -> Result<(), String> {
    let mut probe = Arg::new(long.to_owned())
        .long(long.to_owned())
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone());
    if let Some(names) = arg.get_value_names() {
        probe = probe.value_names(names.to_vec());
    }
    let mut argv = vec![OsString::from("config")];
    for value in values {
        // One argument, so that a value starting with `-` is not taken for an option.
        argv.push(OsString::from(format!("--{long}={value}")));
    }
    Command::new("config")
        .disable_help_flag(true)
        .arg(probe)
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").trim().to_owned()
        })
}

/// Checks the config file `text` (called `file` in errors) against the options of `cmd`, or
/// of its subcommand `sub` (with `cmd`'s global options); returns its settings.
///
/// # Errors
/// The first problem found, by line: TOML syntax, an unknown key, a value of the wrong type,
/// a value the option refuses ([`ConfigError`]).
pub fn check(
    cmd: &Command,
    sub: Option<&str>,
    file: &str,
    text: &str,
) -> Result<Vec<Setting>, ConfigError> {
    let table = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e.span().map_or(1, |span| line_of(text, span.start)),
        message: e.message().trim().to_owned(),
    })?;
    let options = settable(cmd, sub);
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    // The first problem in the file is the one reported.
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut settings = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let line = line_of(text, key.span().start);
        let name: &str = key.get_ref();
        let Some((arg, scope)) = options.iter().find(|(arg, _)| arg.get_long() == Some(name))
        else {
            let mut known: Vec<&str> = options.iter().filter_map(|(a, _)| a.get_long()).collect();
            known.sort_unstable();
            return Err(ConfigError::UnknownKey {
                file: file.to_owned(),
                line,
                key: name.to_owned(),
                known: known.join(", "),
            });
        };
        let wrong = |expected: &'static str, found: &'static str| ConfigError::WrongType {
            file: file.to_owned(),
            line,
            key: name.to_owned(),
            expected,
            found,
        };
        let flag = is_flag(arg);
        let values = if flag {
            match value.get_ref() {
                DeValue::Boolean(b) => vec![b.to_string()],
                other => return Err(wrong("true or false", type_name(other))),
            }
        } else if matches!(arg.get_action(), ArgAction::Append) {
            const EXPECTED: &str = "an array of strings (or a single string)";
            match value.get_ref() {
                DeValue::Array(items) => items
                    .iter()
                    .map(|item| scalar(item.get_ref()).map_err(|found| wrong(EXPECTED, found)))
                    .collect::<Result<Vec<_>, _>>()?,
                other => vec![scalar(other).map_err(|found| wrong(EXPECTED, found))?],
            }
        } else {
            vec![scalar(value.get_ref()).map_err(|found| wrong("a string or an integer", found))?]
        };
        if !flag {
            validate(arg, name, &values).map_err(|reason| ConfigError::InvalidValue {
                file: file.to_owned(),
                line,
                key: name.to_owned(),
                value: values.join(", "),
                reason,
            })?;
        }
        settings.push(Setting {
            key: name.to_owned(),
            line,
            values,
            id: arg.get_id().as_str().to_owned(),
            scope: *scope,
            flag,
        });
    }
    Ok(settings)
}

/// The file's value as the option's default (so that the environment and the command line
/// come first); a required option that the file sets is no longer required.
fn as_default(arg: Arg, setting: &Setting) -> Arg {
    let arg = arg.required(false);
    if setting.flag || setting.values.len() == 1 {
        arg.default_value(setting.values.first().cloned().unwrap_or_default())
    } else {
        arg.default_values(setting.values.clone())
    }
}

/// `cmd` with `settings` (from [`check`] on the same `cmd` and `sub`) as the defaults of its
/// options.
#[must_use]
pub fn apply(cmd: Command, sub: Option<&str>, settings: &[Setting]) -> Command {
    let set = |mut cmd: Command, scope: Scope| {
        for setting in settings.iter().filter(|s| s.scope == scope) {
            cmd = cmd.mut_arg(&setting.id, |arg| as_default(arg, setting));
        }
        cmd
    };
    match sub {
        None => set(cmd, Scope::Own),
        Some(name) => set(cmd, Scope::Global).mut_subcommand(name, |sub| set(sub, Scope::Own)),
    }
}

/// The variable that sets an option: `EKMS_` and its long name in upper case, `-` as `_`.
#[must_use]
pub fn env_name(long: &str) -> String {
    format!("EKMS_{}", long.to_ascii_uppercase().replace('-', "_"))
}

fn with_env_var(arg: Arg) -> Arg {
    match arg.get_long() {
        Some(long) if long != "help" && long != "version" => {
            let name = env_name(long);
            arg.env(name)
        }
        _ => arg,
    }
}

/// `cmd` whose options (those of `sub` and the global ones, with a subcommand) also read
/// `EKMS_<NAME>` from the environment.
#[must_use]
pub fn with_env(cmd: Command, sub: Option<&str>) -> Command {
    match sub {
        None => cmd.mut_args(with_env_var),
        Some(name) => cmd
            .mut_args(|arg| {
                if arg.is_global_set() {
                    with_env_var(arg)
                } else {
                    arg
                }
            })
            .mut_subcommand(name, |sub| sub.mut_args(with_env_var)),
    }
}

/// The config file named by `--config FILE` (or `--config=FILE`) in `argv`, else by
/// `EKMS_CONFIG`. The command line is parsed properly afterwards; this only finds the file
/// whose values must be in place before that.
#[must_use]
pub fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads and checks the config file at `path` for `cmd` (or its subcommand `sub`).
///
/// # Errors
/// When it cannot be read, or as [`check`].
pub fn load(cmd: &Command, sub: Option<&str>, path: &Path) -> Result<Vec<Setting>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    check(cmd, sub, &path.display().to_string(), &text)
}

/// `cmd` (or its subcommand `sub`) reading the environment and the config file `argv` names:
/// parse `argv` with the result.
///
/// # Errors
/// As [`load`].
pub fn layered(cmd: Command, sub: Option<&str>, argv: &[OsString]) -> Result<Command, ConfigError> {
    let cmd = with_env(cmd, sub);
    match config_path(argv) {
        None => Ok(cmd),
        Some(path) => {
            let settings = load(&cmd, sub, &path)?;
            Ok(apply(cmd, sub, &settings))
        }
    }
}

/// Parses this process's command line into `T`, with the environment and the config file
/// below it. Exits with clap's message (and usage) on a bad command line, as `T::parse` does.
///
/// # Errors
/// A config file that cannot be read or is refused ([`ConfigError`]).
pub fn parse<T: clap::Parser>() -> Result<T, ConfigError> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cmd = layered(T::command(), None, &argv)?;
    let matches = cmd.get_matches_from(argv);
    Ok(T::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, FromArgMatches as _, Parser};

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long)]
        listen: String,
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        idle_timeout_secs: u64,
        #[arg(long)]
        tls: bool,
        #[arg(long = "quota")]
        quotas: Vec<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    }

    fn parse_with(text: &str, argv: &[&str]) -> Result<Args, ConfigError> {
        let cmd = with_env(Args::command(), None);
        let settings = check(&cmd, None, "test.toml", text)?;
        let matches = apply(cmd, None, &settings)
            .try_get_matches_from(argv)
            .unwrap();
        Ok(Args::from_arg_matches(&matches).unwrap())
    }

    #[test]
    fn a_file_sets_every_kind_of_option_and_the_command_line_wins() {
        let text = "listen = \"127.0.0.1:1\"\nidle-timeout-secs = 5\ntls = true\n\
                    quota = [\"a=1\", \"b=2\"]\n";
        let args = parse_with(text, &["x"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:1");
        assert_eq!(args.idle_timeout_secs, 5);
        assert!(args.tls);
        assert_eq!(args.quotas, ["a=1", "b=2"]);
        let args = parse_with(text, &["x", "--listen", "127.0.0.1:2", "--quota", "c=3"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:2");
        assert_eq!(args.quotas, ["c=3"]);
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let err = parse_with("listen = \"a\"\n\nlisten-on = \"b\"\n", &["x"]).unwrap_err();
        match &err {
            ConfigError::UnknownKey { line, key, .. } => {
                assert_eq!((*line, key.as_str()), (3, "listen-on"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err
            .to_string()
            .contains("test.toml, line 3: unknown key `listen-on`"));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_with_its_line_and_key() {
        let err = parse_with("listen = \"a\"\ntls = \"yes\"\n", &["x"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "test.toml, line 2: `tls` must be true or false, not a string"
        );
        let err = parse_with("idle-timeout-secs = 0\n", &["x"]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { line: 1, key, .. } if key == "idle-timeout-secs"),
            "{err}"
        );
        let err = parse_with("idle-timeout-secs = -5\n", &["x"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid value '-5' for '--idle-timeout-secs"),
            "{err}"
        );
        let err = parse_with("listen = [1, 2]\n", &["x"]).unwrap_err();
        assert!(
            matches!(err, ConfigError::WrongType { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_toml_names_its_line() {
        let err = parse_with("listen = \"a\"\ntls = \n", &["x"]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { line: 2, .. }), "{err}");
    }

    #[test]
    fn the_config_option_is_found_before_parsing() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&argv(&["x", "dev", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&argv(&["x", "--config=b.toml"])),
            Some(PathBuf::from("b.toml"))
        );
        assert_eq!(env_name("data-dir"), "EKMS_DATA_DIR");
    }
}
