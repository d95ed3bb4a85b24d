//! Crash-safe file writes, used by every layer that keeps files (the blob
//! store, the artifact cache): write a temporary file in the same
//! directory, fsync it, rename it over the target, fsync the directory. A
//! reader sees the old file or the new one, never a torn one, even after
//! `kill -9` or a power cut. A leaf module.

use std::io::Write;
use std::path::Path;

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Replace `path` atomically: `fill` writes the temporary file `tmp` (in
/// the same directory), which is then synced and renamed over `path`, and
/// the directory synced; `tmp` is removed if anything fails.
fn replace_via(
    tmp: &Path,
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir)?;
    let write = || -> std::io::Result<()> {
        fill(tmp)?;
        std::fs::File::open(tmp)?.sync_all()?;
        std::fs::rename(tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(tmp);
    })
}

/// Write `data` to `path` atomically through the temporary file `tmp` (in
/// the same directory; removed if anything fails).
pub fn write_atomic_via(tmp: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace_via(tmp, path, |t| std::fs::File::create(t)?.write_all(data))
}

/// Replace `path` atomically with what `fill` writes to the temporary file
/// it is given (`.NAME.PID-SEQ.tmp`, same directory): for writers that
/// want a path of their own (a model exporter) rather than bytes.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let tmp = parent(path).join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    replace_via(&tmp, path, fill)
}

/// [`write_atomic_with`] of `data`.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |t| std::fs::File::create(t)?.write_all(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
