//! The audit log file (`audit.jsonl`): lines appended in commit order, a torn last line cut off
//! at open, acknowledged lines it lost restored from the journal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::io_error;
use crate::store::StoreError;

pub(super) struct AuditLog {
    pub(super) file: File,
    pub(super) path: PathBuf,
    /// The length of the log as far as acknowledged commits go.
    pub(super) len: u64,
}

impl AuditLog {
    pub(super) fn open(path: PathBuf) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_error("cannot open the audit log", &path))?;
        let len = file
            .metadata()
            .map_err(io_error("cannot stat the audit log", &path))?
            .len();
        let complete = complete_len(&file, len).map_err(io_error("cannot read", &path))?;
        if complete != len {
            tracing::warn!(path = %path.display(), torn = len - complete, "cutting off a torn last audit line");
            file.set_len(complete)
                .and_then(|()| file.sync_all())
                .map_err(io_error("cannot repair the audit log", &path))?;
        }
        Ok(AuditLog {
            file,
            path,
            len: complete,
        })
    }

    /// Appends whatever the file lacks of `lines`, acknowledged lines that start at `offset`.
    pub(super) fn restore(&mut self, offset: u64, lines: &[u8]) -> Result<(), StoreError> {
        // Saturating: `offset` comes from the journal on disk, which may hold anything.
        if offset.saturating_add(lines.len() as u64) <= self.len {
            return Ok(()); // already in the file
        }
        // The file was cut back to whole lines at open, so lines that reached the file only in
        // part end at one of their own line boundaries: append the rest.
        let have = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(0);
        if offset > self.len {
            // The file lost more than a crash can explain (it was cut or replaced): keep what
            // the journal holds; `ekms audit verify` will name the gap.
            tracing::error!(
                offset,
                file_len = self.len,
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
