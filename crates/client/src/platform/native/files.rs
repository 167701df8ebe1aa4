//! Files beside the database (sealed attachments on their way, received files): ordinary
//! files, readable by their owner only.

use std::io::{self, Write};
use std::path::Path;

/// A file being read: the file itself.
pub type FileReader = std::fs::File;

/// A file being written.
#[derive(Debug)]
pub struct FileWriter(std::fs::File);

/// Options for a new file readable by its owner only (ciphertext, a received file).
pub(super) fn private_file_options() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

/// Creates `dir` readable by its owner only, unless it exists.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

pub fn file_len(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

pub fn file_exists(path: &Path) -> bool {
    path.exists()
}

pub fn open_file(path: &Path) -> io::Result<FileReader> {
    std::fs::File::open(path)
}

/// A new (or emptied) owner-only file.
pub fn create_private_file(path: &Path) -> io::Result<FileWriter> {
    private_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map(FileWriter)
}

/// An owner-only file written at its end, created if need be (a resumed download).
pub fn append_private_file(path: &Path) -> io::Result<FileWriter> {
    private_file_options()
        .create(true)
        .append(true)
        .open(path)
        .map(FileWriter)
}

pub fn rename_file(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

pub fn remove_file(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

impl FileWriter {
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    /// On the disk, not only in the kernel's cache.
    pub fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl Write for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
