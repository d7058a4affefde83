//! A job's checkpoint file: an append-only journal of whole checkpoints, the last intact one
//! winning.
//!
//! A participant must store some steps before it answers them (that it released unmask
//! shares for a step, so a restarted daemon never does it twice). Replacing a file through a
//! temporary and a rename costs a truncation and a rename, 0.2–0.5 ms each on ext4 (whose
//! `auto_da_alloc` forces block allocation for that pattern); appending one record is one
//! `write(2)` of a few microseconds. Each record is `len: u32 LE ‖ FNV-1a-64(payload) ‖
//! payload`; reading keeps the last record whose length and checksum hold, so a record cut
//! short by a crash is ignored (and cut off before the next append). When the file has grown
//! past [`COMPACT_FACTOR`] times its last record (and [`COMPACT_MIN`] bytes), it is rewritten
//! with the last record only, through a temporary file and a rename.
//!
//! Each append ends with `fdatasync` (≈ 0.1 ms on this kind of machine), so a checkpoint
//! survives power loss as well as the daemon being killed, and compaction syncs the new file
//! and its directory before and after the rename. Files are created with mode 0600: a
//! checkpoint holds the job's channel secret.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Rewrite the journal once it holds this many times its last record.
pub const COMPACT_FACTOR: u64 = 32;
/// ... and at least this many bytes.
pub const COMPACT_MIN: u64 = 1 << 20;
/// Largest record accepted when reading (a longer length field is damage).
const MAX_RECORD: usize = 1 << 30;
const HEADER: usize = 12;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn open_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// Writes `bytes` to a new file at `path` (mode 0600), through a temporary file, synced, and
/// a rename.
///
/// # Errors
/// The write or the rename failed.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = open_options().write(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// One record: header and payload.
fn record(payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| (l as usize) <= MAX_RECORD)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "checkpoint over 1 GiB"))?;
    let mut r = Vec::with_capacity(HEADER + payload.len());
    r.extend_from_slice(&len.to_le_bytes());
    r.extend_from_slice(&fnv1a(payload).to_le_bytes());
    r.extend_from_slice(payload);
    Ok(r)
}

/// The last intact record of `bytes` and where the intact prefix ends.
fn last_record(bytes: &[u8]) -> (Option<&[u8]>, usize) {
    let (mut at, mut last) = (0usize, None);
    while let Some(h) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let sum = u64::from_le_bytes([h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if len > MAX_RECORD || fnv1a(payload) != sum {
            break;
        }
        last = Some(payload);
        at += HEADER + len;
    }
    (last, at)
}

/// An open checkpoint journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`; returns it with the last intact checkpoint,
    /// if any. A damaged tail is cut off.
    ///
    /// # Errors
    /// The file cannot be read, created or truncated.
    pub fn open(path: &Path) -> io::Result<(Self, Option<Vec<u8>>)> {
        let mut file = open_options().read(true).write(true).open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (last, intact) = last_record(&bytes);
        let last = last.map(<[u8]>::to_vec);
        if intact < bytes.len() {
            file.set_len(intact as u64)?;
        }
        drop(file);
        let file = open_options().append(true).open(path)?;
        Ok((Self { path: path.to_path_buf(), file, len: intact as u64 }, last))
    }

    /// Appends `checkpoint` (one `write`), compacting the file when it has grown.
    ///
    /// # Errors
    /// The write (or the compaction) failed; the previous checkpoint is still readable.
    pub fn append(&mut self, checkpoint: &[u8]) -> io::Result<()> {
        let r = record(checkpoint)?;
        let size = r.len() as u64;
        if self.len + size > COMPACT_MIN.max(COMPACT_FACTOR * size) {
            let tmp = self.path.with_extension("compact");
            {
                let mut f = open_options().write(true).truncate(true).open(&tmp)?;
                f.write_all(&r)?;
                f.sync_data()?;
            }
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                // The rename itself survives power loss once the directory is synced.
                File::open(dir)?.sync_all()?;
            }
            self.file = open_options().append(true).open(&self.path)?;
            self.len = size;
            return Ok(());
        }
        self.file.write_all(&r)?;
        // Durable before anything the checkpoint allows is sent: a party that forgot after a
        // power loss that it released unmask shares for a step could be made to do it twice.
        self.file.sync_data()?;
        self.len += size;
        Ok(())
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no checkpoint.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_checkpoint_wins_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.session");
        let (mut j, last) = Journal::open(&path).unwrap();
        assert!(last.is_none() && j.is_empty());
        j.append(b"one").unwrap();
        j.append(b"two").unwrap();
        drop(j);
        let (mut j, last) = Journal::open(&path).unwrap();
        assert_eq!(last.as_deref(), Some(&b"two"[..]));
        j.append(b"three").unwrap();
        assert_eq!(Journal::open(&path).unwrap().1.as_deref(), Some(&b"three"[..]));
    }

    #[test]
    fn a_torn_or_damaged_tail_is_ignored_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.session");
        let (mut j, _) = Journal::open(&path).unwrap();
        j.append(b"good").unwrap();
        j.append(b"cut short").unwrap();
        drop(j);
        let full = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the second record.
        OpenOptions::new().write(true).open(&path).unwrap().set_len(full - 3).unwrap();
        let (mut j, last) = Journal::open(&path).unwrap();
        assert_eq!(last.as_deref(), Some(&b"good"[..]));
        assert_eq!(j.len(), (HEADER + 4) as u64);
        j.append(b"after").unwrap();
        assert_eq!(Journal::open(&path).unwrap().1.as_deref(), Some(&b"after"[..]));
        // A flipped payload byte: the checksum refuses that record.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Journal::open(&path).unwrap().1.as_deref(), Some(&b"good"[..]));
    }

    #[test]
    fn the_file_is_compacted_to_its_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.session");
        let (mut j, _) = Journal::open(&path).unwrap();
        let big = vec![7u8; 64 * 1024];
        for i in 0..40u8 {
            let mut c = big.clone();
            c[0] = i;
            j.append(&c).unwrap();
            assert!(j.len() <= COMPACT_MIN.max(COMPACT_FACTOR * (big.len() + HEADER) as u64));
        }
        assert!(std::fs::metadata(&path).unwrap().len() < 40 * big.len() as u64);
        let last = Journal::open(&path).unwrap().1.unwrap();
        assert_eq!(last[0], 39);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
