//! Output files that cannot cost the user an input or a previous result.
//!
//! Every file the crate writes goes through this module, for two reasons:
//!
//! - **An output is never one of the inputs.** [`check_output`] runs before any work and refuses an
//!   output path that is the same file as an input, compared by canonical path and, on Unix, by
//!   device and inode, so `./x`, `dir/../x`, symbolic links and hard links are all caught. It also
//!   refuses, up front, an output that names a directory or whose directory is missing or cannot be
//!   written, so a long run does not end in an error about its output.
//! - **An output is whole or absent.** [`write_atomically`] writes a temporary file beside the target,
//!   flushes it to the disk and renames it over the target. A failed run (full disk, an encoder error)
//!   removes the temporary file and leaves the previous file, or none; a killed run leaves the previous
//!   file plus, at worst, a stale temporary file named `.<name>.<pid>.<n>.tmp`, never a partial file at
//!   the target's name.
//!
//! Errors name the path and say what failed in words (missing directory, not a directory, permission
//! denied, read-only file system, no space left) on one line.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A path named on the command line together with the argument that named it (`--output`,
/// `--weights`, `IMAGE`), so that a refusal can name both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arg<'a> {
    /// The argument as the user typed it: `--output`, or `IMAGE` for a positional one.
    pub name: &'a str,
    pub path: &'a Path,
}

impl<'a> Arg<'a> {
    pub fn new(name: &'a str, path: &'a Path) -> Self {
        Arg { name, path }
    }
}

/// Refuses, before any work, an output that is the same file as one of `inputs`, that names a
/// directory, or whose directory is missing or not writable. The error is a bad-input
/// [`Error::Output`] naming the output argument (and the input argument when it is one).
pub fn check_output(output: Arg<'_>, inputs: &[Arg<'_>]) -> Result<()> {
    FileSet::of_args(inputs.iter().copied()).refuse(output)?;
    check_writable(output)
}

/// Refuses an output that names no file (`..`, `/`), names an existing directory, or lies in a
/// directory that is missing, is not a directory, or cannot take a new file. The last is found by
/// creating and removing a temporary file there: only the file system knows (permission bits do not
/// bind root; read-only mounts, `/sys` and full inode tables do).
pub fn check_writable(output: Arg<'_>) -> Result<()> {
    let refuse = |reason: String| Error::Output {
        arg: output.name.to_string(),
        path: output.path.to_path_buf(),
        reason,
    };
    let target = follow_symlink(output.path);
    let Some(name) = target.file_name() else {
        return Err(refuse("expected a file name, found none".into()));
    };
    if fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
        return Err(refuse("expected a file, found a directory".into()));
    }
    let dir = parent_dir(&target);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse(not_a_directory(dir))),
        Err(e) => return Err(refuse(describe(&e, dir))),
    }
    let (tmp, file) = create_temp(dir, name).map_err(|e| refuse(describe(&e, dir)))?;
    drop(file);
    let _ = fs::remove_file(tmp);
    Ok(())
}

/// Whether `a` and `b` name the same file (or, for paths that do not exist yet, the same place).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (a, b) = (Identity::of(a), Identity::of(b));
    (a.location.is_some() && a.location == b.location) || (a.inode.is_some() && a.inode == b.inode)
}

/// Files identified once (canonical path, and device + inode on Unix), each with a value such as the
/// argument that named it, so that many outputs can be checked against many inputs quickly.
#[derive(Debug)]
pub struct FileSet<T> {
    by_location: HashMap<PathBuf, T>,
    by_inode: HashMap<(u64, u64), T>,
}

impl<T> Default for FileSet<T> {
    fn default() -> Self {
        FileSet {
            by_location: HashMap::new(),
            by_inode: HashMap::new(),
        }
    }
}

impl<T: Clone> FileSet<T> {
    /// Adds the file at `path` (which need not exist yet); the first value given for a file stays.
    pub fn insert(&mut self, path: &Path, value: T) {
        let id = Identity::of(path);
        if let Some(l) = id.location {
            self.by_location.entry(l).or_insert_with(|| value.clone());
        }
        if let Some(i) = id.inode {
            self.by_inode.entry(i).or_insert(value);
        }
    }

    /// The value of the file in the set that `path` names, if any.
    pub fn find(&self, path: &Path) -> Option<&T> {
        let id = Identity::of(path);
        id.location
            .and_then(|l| self.by_location.get(&l))
            .or_else(|| id.inode.and_then(|i| self.by_inode.get(&i)))
    }
}

impl<'a> FileSet<Arg<'a>> {
    /// The set of the files these arguments name.
    pub fn of_args(args: impl IntoIterator<Item = Arg<'a>>) -> Self {
        let mut set = FileSet::default();
        for a in args {
            set.insert(a.path, a);
        }
        set
    }

    /// Refuses `output` when it is one of the files in the set, naming both arguments.
    pub fn refuse(&self, output: Arg<'_>) -> Result<()> {
        match self.find(output.path) {
            None => Ok(()),
            Some(input) => Err(Error::Output {
                arg: output.name.to_string(),
                path: output.path.to_path_buf(),
                reason: format!(
                    "the same file as {} {}{}; refusing to write over an input",
                    input.name,
                    input.path.display(),
                    how_same(output.path, input.path)
                ),
            }),
        }
    }
}

/// Explains a match the user may not see: ` (a hard link to it)`, or ` (/canonical/path)` when that
/// differs from how the input was spelt (a symbolic link, `..`, a relative path).
fn how_same(output: &Path, input: &Path) -> String {
    let (o, i) = (Identity::of(output), Identity::of(input));
    match &i.location {
        Some(l) if o.location.as_ref() != Some(l) => " (a hard link to it)".into(),
        Some(l) if l != input => format!(" ({})", l.display()),
        _ => String::new(),
    }
}

/// What makes two paths the same file: where the path leads after resolving links and `..` (for a
/// path that does not exist, its resolved directory plus its name), and on Unix the device and inode,
/// which also catches hard links.
#[derive(Debug)]
struct Identity {
    location: Option<PathBuf>,
    inode: Option<(u64, u64)>,
}

impl Identity {
    fn of(path: &Path) -> Self {
        let location = fs::canonicalize(path).ok().or_else(|| {
            let name = path.file_name()?;
            fs::canonicalize(parent_dir(path))
                .ok()
                .map(|d| d.join(name))
        });
        Identity {
            location,
            inode: inode(path),
        }
    }
}

#[cfg(unix)]
fn inode(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn inode(_: &Path) -> Option<(u64, u64)> {
    None
}

/// Writes `path` through `write`, atomically: the bytes go to a temporary file in the same directory,
/// which is flushed to the disk and then renamed over `path`. On any error the temporary file is
/// removed and `path` keeps its previous content (or stays absent). A symbolic link at `path` is
/// followed, so the link stays and the file it points at is replaced. A replaced file keeps its
/// permissions; a new one gets the process's default (0644 under the usual umask).
///
/// This is the one way the crate writes files; caches (pipeline, tuning) use it too.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let target = follow_symlink(path);
    let fail = |reason: String| Error::Write {
        path: path.to_path_buf(),
        reason,
    };
    let Some(name) = target.file_name() else {
        return Err(fail("expected a file name, found none".into()));
    };
    let dir = parent_dir(&target);
    let (tmp, file) = create_temp(dir, name).map_err(|e| fail(describe(&e, dir)))?;
    let done = fill(file, write)
        .and_then(|()| keep_permissions(&target, &tmp))
        .and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        return Err(fail(describe(&e, dir)));
    }
    sync_dir(dir);
    Ok(())
}

/// [`write_atomically`] for bytes already in memory.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |w| w.write_all(bytes))
}

/// Runs `write` into the temporary file and makes sure its bytes are on the disk before the rename,
/// so a crash right after the rename cannot leave an empty file at the target.
fn fill(file: File, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Gives the temporary file the permissions of the file it replaces (best effort: the content matters
/// more than the mode).
fn keep_permissions(target: &Path, tmp: &Path) -> io::Result<()> {
    if let Ok(m) = fs::metadata(target) {
        if m.is_file() {
            let _ = fs::set_permissions(tmp, m.permissions());
        }
    }
    Ok(())
}

/// Makes the rename itself durable (Unix; best effort, some file systems refuse to sync a directory).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The file a symbolic link at `path` points to, when it resolves; `path` itself otherwise.
fn follow_symlink(path: &Path) -> PathBuf {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(p) = fs::canonicalize(path) {
            return p;
        }
    }
    path.to_path_buf()
}

/// The directory `path` lies in; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates a new, uniquely named temporary file in `dir`: `.<name>.<pid>.<n>.tmp`, hidden, and
/// recognisable as ours should a kill leave it behind. `create_new` never follows or reuses an
/// existing entry.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // File names are limited to 255 bytes; keep room for the suffix.
    let stem: OsString = if name.len() <= 200 {
        name.to_os_string()
    } else {
        "res2net-output".into()
    };
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(&stem);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// An I/O error on a file in `dir`, in words that say what to fix.
fn describe(e: &io::Error, dir: &Path) -> String {
    let d = dir.display();
    match e.kind() {
        ErrorKind::NotFound if fs::metadata(dir).is_err() => {
            format!("the directory {d} does not exist")
        }
        ErrorKind::NotADirectory => not_a_directory(dir),
        ErrorKind::PermissionDenied => format!("permission denied: cannot create files in {d}"),
        ErrorKind::ReadOnlyFilesystem => format!("{d} is on a read-only file system"),
        ErrorKind::StorageFull => format!("no space left on the device holding {d}"),
        ErrorKind::QuotaExceeded => format!("disk quota exceeded in {d}"),
        ErrorKind::IsADirectory => "expected a file, found a directory".into(),
        _ => format!("{e} (in {d})"),
    }
}

/// Names the part of `dir` that is a file rather than a directory (`a/file` for `a/file/b`).
fn not_a_directory(dir: &Path) -> String {
    let mut prefixes: Vec<&Path> = dir.ancestors().collect();
    prefixes.reverse();
    let culprit = prefixes
        .into_iter()
        .find(|p| !p.as_os_str().is_empty() && fs::metadata(p).is_ok_and(|m| !m.is_dir()))
        .unwrap_or(dir);
    format!("{} is not a directory", culprit.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory for one test's files, removed when the test ends.
    struct Scratch(PathBuf);

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("res2net-output-file-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = scratch("replace");
        let p = dir.join("out.bin");
        write_bytes_atomically(&p, b"first").unwrap();
        write_bytes_atomically(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(entries(&dir), ["out.bin"]);
    }

    #[test]
    fn a_failing_writer_keeps_the_previous_file() {
        let dir = scratch("failing");
        let p = dir.join("out.bin");
        fs::write(&p, b"previous").unwrap();
        let e = write_atomically(&p, |w| {
            w.write_all(&[7; 3 << 20])?;
            Err(io::Error::other("encoder gave up"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("out.bin") && e.contains("encoder gave up"),
            "{e}"
        );
        assert_eq!(fs::read(&p).unwrap(), b"previous");
        assert_eq!(entries(&dir), ["out.bin"]);
    }

    #[cfg(unix)]
    #[test]
    fn keeps_the_mode_of_a_replaced_file_and_follows_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let real = dir.join("real.bin");
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link.bin");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_bytes_atomically(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        let mode = fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_directory_and_file_as_directory_are_named() {
        let dir = scratch("missing");
        let e = write_bytes_atomically(&dir.join("nope/out.bin"), b"x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nope/out.bin") && e.contains("does not exist"),
            "{e}"
        );
        fs::write(dir.join("file"), b"").unwrap();
        let out = dir.join("file/sub/out.bin");
        let e = check_writable(Arg::new("--output", &out))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--output ") && e.ends_with("file is not a directory"),
            "{e}"
        );
    }

    #[test]
    fn same_file_sees_through_dot_dot_and_links() {
        let dir = scratch("same");
        let a = dir.join("a.bin");
        fs::write(&a, b"a").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        assert!(same_file(&a, &dir.join("sub/../a.bin")));
        assert!(same_file(&a, &dir.join("./a.bin")));
        assert!(!same_file(&a, &dir.join("b.bin")));
        // Two paths that do not exist yet: the same place.
        assert!(same_file(&dir.join("new.bin"), &dir.join("sub/../new.bin")));
        #[cfg(unix)]
        {
            fs::hard_link(&a, dir.join("hard.bin")).unwrap();
            assert!(same_file(&a, &dir.join("hard.bin")));
            std::os::unix::fs::symlink(&a, dir.join("soft.bin")).unwrap();
            assert!(same_file(&a, &dir.join("soft.bin")));
        }
        let inputs = [Arg::new("--weights", &a)];
        let out = dir.join("sub/../a.bin");
        let e = check_output(Arg::new("--output", &out), &inputs)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--output ") && e.contains("the same file as --weights"),
            "{e}"
        );
    }
}
