//! The embedded store's audit log as files: the current `audit.jsonl`, and before it the rotated
//! files `audit-<offset>.jsonl.gz`, each named by the log offset of its first byte (20 digits,
//! so that names sort in log order), gzip-compressed (RFC 1952) once rotated. Together they are
//! one log: the lines of the rotated files in name order, then `audit.jsonl`'s.
//!
//! The parent writes them ([`super::RedbStore`]); `ekms audit verify DIR`, `tail` and `prune`
//! read them with [`list`] and [`open`]. The names are a convenience, not a trust anchor:
//! verification goes by the hash chain, and names only say where a gap lies.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The current file, which the store appends to.
pub const CURRENT: &str = "audit.jsonl";

const PREFIX: &str = "audit-";
const PLAIN: &str = ".jsonl";
const GZ: &str = ".jsonl.gz";

/// The name of the rotated file whose first byte is at `start` in the log.
pub fn rotated_name(start: u64, compressed: bool) -> String {
    format!("{PREFIX}{start:020}{}", if compressed { GZ } else { PLAIN })
}

/// One file of an audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFile {
    /// Where it is.
    pub path: PathBuf,
    /// A rotated file's first byte's offset in the log; `None` for `audit.jsonl`.
    pub start: Option<u64>,
    /// Whether it is gzip (`.jsonl.gz`).
    pub compressed: bool,
}

impl AuditFile {
    /// The file's name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// What a name in the directory is, if it is an audit file: (start, compressed), start `None`
/// for the current file.
fn parse_name(name: &str) -> Option<(Option<u64>, bool)> {
    if name == CURRENT {
        return Some((None, false));
    }
    let rest = name.strip_prefix(PREFIX)?;
    let (digits, compressed) = match rest.strip_suffix(GZ) {
        Some(digits) => (digits, true),
        None => (rest.strip_suffix(PLAIN)?, false),
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((Some(digits.parse().ok()?), compressed))
}

/// The audit files in `dir`, in log order: the rotated ones by their start, then `audit.jsonl`
/// if present. A rotated file present both plain and compressed (the parent stopped while
/// compressing it) is listed once, compressed: the `.gz` is renamed into place only once whole.
///
/// # Errors
/// When the directory cannot be read.
pub fn list(dir: &Path) -> io::Result<Vec<AuditFile>> {
    let mut files: Vec<AuditFile> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((start, compressed)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        files.push(AuditFile {
            path: entry.path(),
            start,
            compressed,
        });
    }
    // Rotated files by start (the current one last), the compressed one of a pair first.
    files.sort_by_key(|f| (f.start.is_none(), f.start, !f.compressed));
    files.dedup_by(|later, earlier| later.start.is_some() && later.start == earlier.start);
    Ok(files)
}

/// Reads a file's lines as written, decompressing a `.gz`.
///
/// # Errors
/// When it cannot be opened.
pub fn open(file: &AuditFile) -> io::Result<Box<dyn Read + Send>> {
    let f = File::open(&file.path)?;
    Ok(if file.compressed {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else {
        Box::new(f)
    })
}

/// The length of a file's lines as written (a `.gz` is read through).
///
/// # Errors
/// When it cannot be read or is not gzip.
pub fn content_len(file: &AuditFile) -> io::Result<u64> {
    if file.compressed {
        io::copy(&mut open(file)?, &mut io::sink())
    } else {
        Ok(std::fs::metadata(&file.path)?.len())
    }
}

/// A size or age setting that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnitError {
    /// No number, or one too large.
    #[error("{0:?} is not a number with an optional unit ({1})")]
    Malformed(String, &'static str),
}

/// Parses a size: a number of bytes with an optional `K`, `M`, `G` or `T` (powers of 1024).
///
/// # Errors
/// When it does not parse or overflows.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    const UNITS: &str = "K, M, G, T: powers of 1024";
    parse_with(text, UNITS, |unit| match unit {
        "" | "B" => Some(1),
        "K" | "KiB" => Some(1 << 10),
        "M" | "MiB" => Some(1 << 20),
        "G" | "GiB" => Some(1 << 30),
        "T" | "TiB" => Some(1 << 40),
        _ => None,
    })
}

/// Parses an age: a number of seconds with an optional `s`, `m`, `h` or `d`.
///
/// # Errors
/// When it does not parse or overflows.
pub fn parse_age(text: &str) -> Result<Duration, UnitError> {
    const UNITS: &str = "s, m, h, d";
    parse_with(text, UNITS, |unit| match unit {
        "" | "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => None,
    })
    .map(Duration::from_secs)
}

fn parse_with(
    text: &str,
    units: &'static str,
    multiplier: impl Fn(&str) -> Option<u64>,
) -> Result<u64, UnitError> {
    let malformed = || UnitError::Malformed(text.to_owned(), units);
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| malformed())?;
    let multiplier = multiplier(unit.trim()).ok_or_else(malformed)?;
    number.checked_mul(multiplier).ok_or_else(malformed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_log_order_and_parse_back() {
        assert_eq!(
            rotated_name(1234, true),
            "audit-00000000000000001234.jsonl.gz"
        );
        assert_eq!(
            parse_name(&rotated_name(u64::MAX, false)),
            Some((Some(u64::MAX), false))
        );
        assert_eq!(parse_name("audit.jsonl"), Some((None, false)));
        assert_eq!(parse_name("audit-12.jsonl.gz"), None);
        assert_eq!(parse_name("audit-0000000000000000000x.jsonl"), None);

        let dir = tempfile::tempdir().unwrap();
        for name in [
            CURRENT.to_owned(),
            rotated_name(900, true),
            rotated_name(20, false),
            rotated_name(20, true),
            rotated_name(0, true),
            "journal.0".to_owned(),
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<String> = list(dir.path())
            .unwrap()
            .iter()
            .map(AuditFile::name)
            .collect();
        assert_eq!(
            names,
            [
                rotated_name(0, true),
                rotated_name(20, true),
                rotated_name(900, true),
                CURRENT.to_owned()
            ]
        );
    }

    #[test]
    fn sizes_and_ages_parse_with_units() {
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("64K"), Ok(64 * 1024));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert!(parse_bytes("2X").is_err());
        assert!(parse_bytes("K").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_age("1w").is_err());
    }
}
