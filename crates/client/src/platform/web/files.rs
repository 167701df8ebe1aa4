//! Files beside the database, in the browser: kept in the worker's memory. They are
//! transient by design (a file sealed for upload goes once uploaded, a download once opened,
//! a saved file once the page took it), each at most the attachment limit, so nothing here
//! outlives the worker; an upload a reload interrupts is given up, not resumed (docs/web-client.md).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

type Bytes = Rc<RefCell<Vec<u8>>>;

thread_local! {
    static FILES: RefCell<HashMap<PathBuf, Bytes>> = RefCell::default();
}

fn missing(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no file {}", path.display()),
    )
}

fn get(path: &Path) -> io::Result<Bytes> {
    FILES.with(|files| {
        files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| missing(path))
    })
}

fn put(path: &Path, bytes: Bytes) {
    FILES.with(|files| files.borrow_mut().insert(path.to_owned(), bytes));
}

/// Places `bytes` (a file the user chose) at `path`, for the client to read.
pub fn write_file(path: &Path, bytes: Vec<u8>) {
    put(path, Rc::new(RefCell::new(bytes)));
}

/// Takes the file at `path` (a saved attachment) out, for the page.
pub fn take_file(path: &Path) -> io::Result<Vec<u8>> {
    let bytes = FILES.with(|files| files.borrow_mut().remove(path).ok_or_else(|| missing(path)))?;
    Ok(Rc::try_unwrap(bytes)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| shared.borrow().clone()))
}

/// Directories need no creating.
pub fn ensure_private_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

pub fn file_len(path: &Path) -> io::Result<u64> {
    Ok(get(path)?.borrow().len() as u64)
}

pub fn file_exists(path: &Path) -> bool {
    get(path).is_ok()
}

/// A file being read, from its start.
#[derive(Debug)]
pub struct FileReader {
    bytes: Bytes,
    at: u64,
}

pub fn open_file(path: &Path) -> io::Result<FileReader> {
    Ok(FileReader {
        bytes: get(path)?,
        at: 0,
    })
}

impl Read for FileReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let bytes = self.bytes.borrow();
        let start = usize::try_from(self.at)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = buffer.len().min(bytes.len() - start);
        buffer[..n].copy_from_slice(&bytes[start..start + n]);
        self.at += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.bytes.borrow().len() as i128;
        let at = match to {
            SeekFrom::Start(at) => i128::from(at),
            SeekFrom::End(delta) => len + i128::from(delta),
            SeekFrom::Current(delta) => i128::from(self.at) + i128::from(delta),
        };
        self.at = u64::try_from(at)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.at)
    }
}

/// A file being written, at its end.
#[derive(Debug)]
pub struct FileWriter(Bytes);

pub fn create_private_file(path: &Path) -> io::Result<FileWriter> {
    let bytes = Bytes::default();
    put(path, bytes.clone());
    Ok(FileWriter(bytes))
}

pub fn append_private_file(path: &Path) -> io::Result<FileWriter> {
    match get(path) {
        Ok(bytes) => Ok(FileWriter(bytes)),
        Err(_) => create_private_file(path),
    }
}

pub fn rename_file(from: &Path, to: &Path) -> io::Result<()> {
    let bytes = FILES.with(|files| files.borrow_mut().remove(from).ok_or_else(|| missing(from)))?;
    put(to, bytes);
    Ok(())
}

pub fn remove_file(path: &Path) -> io::Result<()> {
    FILES
        .with(|files| files.borrow_mut().remove(path))
        .map(|_| ())
        .ok_or_else(|| missing(path))
}

impl FileWriter {
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.0.borrow().len() as u64)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too large"))?;
        self.0.borrow_mut().resize(len, 0);
        Ok(())
    }

    pub fn sync_all(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
