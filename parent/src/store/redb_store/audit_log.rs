//! The audit log's files: `audit.jsonl`, lines appended in commit order, a torn last line cut
//! off at open, acknowledged lines it lost restored from the journal; rotated by size or age
//! into `audit-<offset>.jsonl.gz` (`store::audit_files`), between commits.
//!
//! Offsets are the log's, across files: `audit.jsonl` starts at `base`, the end of the last
//! rotated file, which is found again at open from that file's name and length. The journal
//! records each entry's lines at such an offset, so a replay after a rotation knows which lines
//! a rotated file already holds.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::io_error;
use crate::store::audit_files;
use crate::store::StoreError;

/// When the audit log rotates, and how much free space it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditSettings {
    /// Rotate once `audit.jsonl` holds this many bytes (`None`: never by size).
    pub max_bytes: Option<u64>,
    /// Rotate once `audit.jsonl` is this old (its first line's file was started this long ago;
    /// checked at each commit). `None`: never by age.
    pub max_age: Option<Duration>,
    /// Refuse commits while the data directory's file system has less free space than this:
    /// a commit refused before anything is written loses nothing and leaves the store usable,
    /// whereas a write that fails half way leaves the audit file's tail unknown.
    pub min_free_bytes: u64,
}

impl AuditSettings {
    /// The default free-space reserve: room for the journals' growth (4 MiB at a time), a
    /// checkpoint's redb pages and a rotated file's compressed copy.
    pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            max_bytes: None,
            max_age: None,
            min_free_bytes: Self::DEFAULT_MIN_FREE_BYTES,
        }
    }
}

pub(super) struct AuditLog {
    pub(super) file: File,
    pub(super) path: PathBuf,
    /// The length of `audit.jsonl` as far as acknowledged commits go.
    pub(super) len: u64,
    /// The log offset of `audit.jsonl`'s first byte: the end of the rotated files.
    pub(super) base: u64,
    /// When `audit.jsonl` was started, for rotation by age.
    started: SystemTime,
}

impl AuditLog {
    /// Opens `dir/audit.jsonl` (creating it), cuts a torn last line, finishes what a rotation
    /// cut short (a plain rotated file whose compressed copy is whole: the plain one goes) and
    /// finds where the file starts in the log. Returns the log and the rotated files still to
    /// compress.
    pub(super) fn open(dir: &Path) -> Result<(Self, Vec<PathBuf>), StoreError> {
        let path = dir.join(audit_files::CURRENT);
        let (base, uncompressed) = reconcile_rotated(dir)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error("cannot open the audit log", &path))?;
        let metadata = file
            .metadata()
            .map_err(io_error("cannot stat the audit log", &path))?;
        let len = metadata.len();
        let complete = complete_len(&file, len).map_err(io_error("cannot read", &path))?;
        if complete != len {
            tracing::warn!(path = %path.display(), torn = len - complete, "cutting off a torn last audit line");
            file.set_len(complete)
                .and_then(|()| file.sync_all())
                .map_err(io_error("cannot repair the audit log", &path))?;
        }
        let started = if complete == 0 {
            SystemTime::now()
        } else {
            metadata
                .created()
                .or_else(|_| metadata.modified())
                .unwrap_or_else(|_| SystemTime::now())
        };
        Ok((
            AuditLog {
                file,
                path,
                len: complete,
                base,
                started,
            },
            uncompressed,
        ))
    }

    /// The log offset just past the last acknowledged line.
    pub(super) fn end(&self) -> u64 {
        self.base + self.len
    }

    /// Whether `audit.jsonl` is due for rotation.
    pub(super) fn rotation_due(&self, settings: &AuditSettings, now: SystemTime) -> bool {
        if self.len == 0 {
            return false;
        }
        let by_size = settings.max_bytes.is_some_and(|max| self.len >= max);
        let by_age = settings
            .max_age
            .is_some_and(|max| now.duration_since(self.started).is_ok_and(|age| age >= max));
        by_size || by_age
    }

    /// Moves `audit.jsonl` aside as `audit-<base>.jsonl` (synced first) and starts an empty
    /// one; returns the rotated file, to compress. Called between commits, under the store's
    /// lock.
    ///
    /// # Errors
    /// A sync, the rename, the new file or the directory's sync failed: the caller poisons the
    /// store, whose reopening finds the files as they are ([`AuditLog::open`]).
    pub(super) fn rotate(&mut self, dir: &Path) -> Result<PathBuf, StoreError> {
        self.file
            .sync_data()
            .map_err(io_error("cannot sync", &self.path))?;
        let rotated = dir.join(audit_files::rotated_name(self.base, false));
        std::fs::rename(&self.path, &rotated)
            .map_err(io_error("cannot rotate the audit log to", &rotated))?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io_error("cannot open the audit log", &self.path))?;
        sync_dir(dir)?;
        self.file = file;
        self.base += self.len;
        self.len = 0;
        self.started = SystemTime::now();
        Ok(rotated)
    }

    /// Appends whatever the log lacks of `lines`, acknowledged lines that start at log offset
    /// `offset`.
    pub(super) fn restore(&mut self, offset: u64, lines: &[u8]) -> Result<(), StoreError> {
        let end = self.end();
        // Saturating: `offset` comes from the journal on disk, which may hold anything.
        if offset.saturating_add(lines.len() as u64) <= end {
            return Ok(()); // already in the file, or in a rotated one
        }
        // The file was cut back to whole lines at open, so lines that reached the file only in
        // part end at one of their own line boundaries: append the rest.
        let have = usize::try_from(end.saturating_sub(offset)).unwrap_or(0);
        if offset > end {
            // The file lost more than a crash can explain (it was cut or replaced): keep what
            // the journal holds; `ekms audit verify` will name the gap.
            tracing::error!(
                offset,
                log_end = end,
                "the audit log is shorter than its acknowledged lines; appending them at its end"
            );
        }
        let missing = lines.get(have..).unwrap_or_default();
        self.file
            .write_all(missing)
            .map_err(io_error("cannot restore lines to", &self.path))?;
        self.len += missing.len() as u64;
        let restored = missing.iter().filter(|&&b| b == b'\n').count();
        if restored > 0 {
            tracing::warn!(
                restored,
                "restored acknowledged audit lines the file had lost"
            );
        }
        Ok(())
    }
}

/// Removes leftovers of an interrupted compression and returns where `audit.jsonl` starts in
/// the log (the end of the last rotated file; 0 with none) and the plain rotated files.
fn reconcile_rotated(dir: &Path) -> Result<(u64, Vec<PathBuf>), StoreError> {
    let entries = std::fs::read_dir(dir).map_err(io_error("cannot read", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(TMP_SUFFIX) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(io_error("cannot remove", &path))?;
        }
    }
    let files = audit_files::list(dir).map_err(io_error("cannot read", dir))?;
    let mut uncompressed = Vec::new();
    for file in files.iter().filter(|f| f.start.is_some()) {
        let plain = dir.join(audit_files::rotated_name(file.start.unwrap_or(0), false));
        if !file.compressed {
            uncompressed.push(plain);
        } else if plain.exists() {
            std::fs::remove_file(&plain).map_err(io_error("cannot remove", &plain))?;
        }
    }
    let base = match files.iter().rev().find(|f| f.start.is_some()) {
        Some(last) => {
            let len = audit_files::content_len(last)
                .map_err(io_error("cannot read the rotated audit file", &last.path))?;
            last.start.unwrap_or(0) + len
        }
        None => 0,
    };
    Ok((base, uncompressed))
}

const TMP_SUFFIX: &str = ".tmp";

/// Compresses a rotated `audit-<offset>.jsonl` into `audit-<offset>.jsonl.gz` (written aside,
/// synced, renamed into place) and removes it.
///
/// # Errors
/// Reading, writing or syncing failed (a full disk, say); the plain file is kept, whole.
pub(super) fn compress(plain: &Path) -> Result<PathBuf, StoreError> {
    let dir = plain.parent().unwrap_or(Path::new("."));
    let gz = plain.with_extension("jsonl.gz");
    let tmp = plain.with_extension(format!("jsonl.gz{TMP_SUFFIX}"));
    let written = (|| -> std::io::Result<()> {
        let mut input = File::open(plain)?;
        let out = File::create(&tmp)?;
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("cannot compress", plain)(e));
    }
    std::fs::rename(&tmp, &gz).map_err(io_error("cannot rename into place", &gz))?;
    sync_dir(dir)?;
    std::fs::remove_file(plain).map_err(io_error("cannot remove", plain))?;
    Ok(gz)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("cannot sync", dir))
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
///
/// # Errors
/// When `statvfs` fails.
pub(super) fn free_bytes(dir: &Path) -> Result<u64, StoreError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|errno| StoreError::Io {
        action: "cannot read the free space of",
        path: dir.to_owned(),
        source: std::io::Error::from(errno),
    })?;
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Ok(free)
}

/// The length of `file` up to and including its last `\n` (0 if it has none).
pub(super) fn complete_len(file: &File, len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}
