//! `memfs` v2: the in-memory file system cell, with `stat` and readable directories.
//!
//! A new version of `cells/kernel/memfs` (v1) with the same crate identity, the same interface and
//! **exactly the same state types**, so that a live swap binds this version's [`FS`] to v1's
//! memory: the tree v1 built is this version's tree, and back. What changes is behaviour: reading
//! a directory gives a listing with sizes instead of an error, `stat` describes a node, and
//! `revision` says v2.
//!
//! Keeping the state means keeping every type reachable from [`FS`] as it is in v1, including the
//! `Inode` trait: nodes that v1 created keep v1's vtables (v1 stays mapped after the swap while
//! anything can reach it), nodes this version creates carry this version's, and either version
//! calls both through the same vtable layout. So the trait keeps v1's methods, in v1's order, and
//! the new behaviour is built from them (directories are recognised with `as_dir`, sizes come from
//! `read`) instead of from new trait methods.
//!
//! A tree of directories whose nodes are `Box<dyn Inode>` trait objects: regular files,
//! directories, and special files whose contents are generated on read (`/dev/frames` asks the
//! `frame_alloc` cell, `/dev/klog` dumps the `klog` cell). A regular file's data is accounted in
//! frames from `frame_alloc`: `ceil(len / 4096)` frames per file, allocated on create and write,
//! freed on overwrite and remove. The tree lives in the `pub static` [`FS`] so that a new version of
//! this cell keeps it on a live swap. `frame_alloc` and `klog` never call back into `memfs`.
//!
//! Interface (all `pub`, non-generic, `#[inline(never)]`):
//! - `init() -> Result<(), String>`: create `/etc/motd`, `/tmp`, `/dev/frames` and `/dev/klog`.
//! - `create(path: &str, data: &[u8]) -> Result<(), String>`: a new regular file; missing parent
//!   directories are created, an existing path is an error.
//! - `write(path: &str, data: &[u8]) -> Result<(), String>`: replace an existing file's contents.
//! - `read(path: &str) -> Result<Vec<u8>, String>`.
//! - `read_or_panic(path: &str) -> Vec<u8>`: panics (naming the path) when `read` fails.
//! - `remove(path: &str) -> Result<(), String>`: a file or an empty directory.
//! - `mkdir(path: &str) -> Result<(), String>`: a directory and its missing parents.
//! - `list(dir: &str) -> Result<Vec<String>, String>`: sorted names, directories end in `/`.
//! - `file_count() -> usize`: number of non-directory nodes.
//! - `frames_used() -> usize`: frames held by regular files.
//! - `revision() -> String`: which version of the cell this is.
//! - changed in v2: `read` of a directory gives a listing: one line per entry, `name/` for a
//!   directory, `name <size>` for a file.
//! - new in v2: `stat(path: &str) -> Result<String, String>`: one line: kind, size, frames.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Contents of `/etc/motd` after `init`.
pub const MOTD: &str = "Welcome to the cell system.\n";

/// A node of the tree. Exactly v1's trait (see the crate docs): do not add, remove or reorder
/// methods, or change their signatures.
trait Inode: Send {
    /// Contents of the node, or an error (directories cannot be read).
    fn read(&self) -> Result<Vec<u8>, String>;
    /// Replaces the contents; returns the old frames, or the given frames back if not writable.
    fn store(&mut self, _data: &[u8], frames: Vec<u64>) -> Result<Vec<u64>, Vec<u64>> {
        Err(frames)
    }
    /// Frames held by this node.
    fn frames(&self) -> &[u64] {
        &[]
    }
    fn as_dir(&self) -> Option<&Dir> {
        None
    }
    fn as_dir_mut(&mut self) -> Option<&mut Dir> {
        None
    }
}

struct File {
    data: Vec<u8>,
    frames: Vec<u64>,
}

impl Inode for File {
    fn read(&self) -> Result<Vec<u8>, String> {
        Ok(self.data.clone())
    }

    fn store(&mut self, data: &[u8], frames: Vec<u64>) -> Result<Vec<u64>, Vec<u64>> {
        self.data = Vec::from(data);
        Ok(core::mem::replace(&mut self.frames, frames))
    }

    fn frames(&self) -> &[u64] {
        &self.frames
    }
}

/// A directory: named children. Exactly v1's type.
pub struct Dir {
    entries: BTreeMap<String, Box<dyn Inode>>,
}

impl Dir {
    const fn new() -> Self {
        Dir {
            entries: BTreeMap::new(),
        }
    }

    fn count_files(&self) -> usize {
        self.entries
            .values()
            .map(|n| n.as_dir().map_or(1, Dir::count_files))
            .sum()
    }

    fn count_frames(&self) -> usize {
        self.entries
            .values()
            .map(|n| n.as_dir().map_or(n.frames().len(), Dir::count_frames))
            .sum()
    }
}

impl Inode for Dir {
    fn read(&self) -> Result<Vec<u8>, String> {
        Err(String::from("is a directory"))
    }
    fn as_dir(&self) -> Option<&Dir> {
        Some(self)
    }
    fn as_dir_mut(&mut self) -> Option<&mut Dir> {
        Some(self)
    }
}

/// `/dev/frames`: the frame allocator's counters, read through `frame_alloc`.
struct DevFrames;

impl Inode for DevFrames {
    fn read(&self) -> Result<Vec<u8>, String> {
        let text = format!(
            "total {}\nfree {}\nallocated {}\n",
            frame_alloc::total_frames(),
            frame_alloc::free_count(),
            frame_alloc::allocated_frames().len()
        );
        Ok(text.into_bytes())
    }
}

/// `/dev/klog`: the kernel log, one entry per line.
struct DevKlog;

impl Inode for DevKlog {
    fn read(&self) -> Result<Vec<u8>, String> {
        let mut text = String::new();
        for line in klog::dump() {
            text.push_str(&line);
            text.push('\n');
        }
        Ok(text.into_bytes())
    }
}

/// Splits an absolute path into its components.
fn components(path: &str) -> Result<Vec<&str>, String> {
    if !path.starts_with('/') {
        return Err(format!("memfs: {path:?} is not an absolute path"));
    }
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(format!("memfs: {path:?}: '.' and '..' are not supported"));
    }
    Ok(parts)
}

/// The file system state: the root directory. Exactly v1's type, so [`FS`] keeps v1's size and
/// alignment and a swap binds it to v1's memory.
pub struct Fs {
    root: Dir,
}

impl Fs {
    /// An empty root directory (usable in a `static`).
    pub const fn new() -> Self {
        Fs { root: Dir::new() }
    }

    fn lookup(&self, path: &str) -> Result<&dyn Inode, String> {
        let mut node: &dyn Inode = &self.root;
        for name in components(path)? {
            let dir = node
                .as_dir()
                .ok_or_else(|| format!("memfs: {path}: not a directory on the way"))?;
            node = dir
                .entries
                .get(name)
                .ok_or_else(|| format!("memfs: {path}: no such file or directory"))?
                .as_ref();
        }
        Ok(node)
    }

    /// The directory at `parts`, creating missing directories when `create` is set.
    fn dir_mut(&mut self, path: &str, parts: &[&str], create: bool) -> Result<&mut Dir, String> {
        let mut dir = &mut self.root;
        for name in parts {
            if create && !dir.entries.contains_key(*name) {
                dir.entries
                    .insert(String::from(*name), Box::new(Dir::new()));
            }
            dir = dir
                .entries
                .get_mut(*name)
                .ok_or_else(|| format!("memfs: {path}: no such directory"))?
                .as_dir_mut()
                .ok_or_else(|| format!("memfs: {path}: {name} is not a directory"))?;
        }
        Ok(dir)
    }

    /// Inserts `node` at `path`; on error hands the node back.
    fn insert(&mut self, path: &str, node: Box<dyn Inode>) -> Result<(), (String, Box<dyn Inode>)> {
        let parts = match components(path) {
            Ok(parts) if !parts.is_empty() => parts,
            Ok(_) => return Err((format!("memfs: {path}: already exists"), node)),
            Err(e) => return Err((e, node)),
        };
        let (name, parents) = parts.split_last().expect("not empty");
        let dir = match self.dir_mut(path, parents, true) {
            Ok(dir) => dir,
            Err(e) => return Err((e, node)),
        };
        if dir.entries.contains_key(*name) {
            return Err((format!("memfs: {path}: already exists"), node));
        }
        dir.entries.insert(String::from(*name), node);
        Ok(())
    }

    /// Removes the node at `path` (a file or an empty directory) and returns it.
    fn unlink(&mut self, path: &str) -> Result<Box<dyn Inode>, String> {
        let parts = components(path)?;
        let (name, parents) = parts
            .split_last()
            .ok_or_else(|| format!("memfs: {path}: cannot remove the root"))?;
        let dir = self.dir_mut(path, parents, false)?;
        let node = dir
            .entries
            .get(*name)
            .ok_or_else(|| format!("memfs: {path}: no such file or directory"))?;
        if node.as_dir().is_some_and(|d| !d.entries.is_empty()) {
            return Err(format!("memfs: {path}: directory not empty"));
        }
        Ok(dir.entries.remove(*name).expect("present"))
    }

    /// A directory's listing as text: `name/` for a subdirectory, `name <size>` for a file.
    fn listing(dir: &Dir) -> String {
        let mut text = String::new();
        for (name, node) in &dir.entries {
            let line = match node.as_dir() {
                Some(_) => format!("{name}/\n"),
                None => match node.read() {
                    Ok(data) => format!("{name} {}\n", data.len()),
                    Err(e) => format!("{name} ({e})\n"),
                },
            };
            text.push_str(&line);
        }
        text
    }

    /// One line describing the node at `path`.
    fn stat(&self, path: &str) -> Result<String, String> {
        let node = self.lookup(path)?;
        if let Some(dir) = node.as_dir() {
            let entries = dir.entries.len();
            let files = dir.count_files();
            let frames = dir.count_frames();
            return Ok(format!(
                "{path}: directory, {entries} {}, {files} {} below, {frames} {}",
                plural(entries, "entry", "entries"),
                plural(files, "file", "files"),
                plural(frames, "frame", "frames"),
            ));
        }
        let size = node
            .read()
            .map(|data| data.len())
            .map_err(|e| format!("memfs: {path}: {e}"))?;
        let frames = node.frames().len();
        // Regular files hold frames for their data; generated (special) files hold none.
        let kind = if frames > 0 || size == 0 {
            "file"
        } else {
            "special file"
        };
        Ok(format!(
            "{path}: {kind}, {size} {}, {frames} {}",
            plural(size, "byte", "bytes"),
            plural(frames, "frame", "frames"),
        ))
    }

    fn list(&self, path: &str) -> Result<Vec<String>, String> {
        let dir = self
            .lookup(path)?
            .as_dir()
            .ok_or_else(|| format!("memfs: {path}: not a directory"))?;
        Ok(dir
            .entries
            .iter()
            .map(|(name, node)| match node.as_dir() {
                Some(_) => format!("{name}/"),
                None => name.clone(),
            })
            .collect())
    }
}

impl Default for Fs {
    fn default() -> Self {
        Self::new()
    }
}

/// The file system. `pub`, and of exactly v1's type, so that a swap binds it to v1's memory.
#[doc(hidden)]
pub static FS: spin::Mutex<Fs> = spin::Mutex::new(Fs::new());

/// Allocates the frames that `len` bytes of file data occupy; all or nothing.
fn alloc_frames(path: &str, len: usize) -> Result<Vec<u64>, String> {
    let needed = len.div_ceil(frame_alloc::FRAME_SIZE as usize);
    let mut frames = Vec::with_capacity(needed);
    for _ in 0..needed {
        match frame_alloc::alloc_frame() {
            Some(frame) => frames.push(frame),
            None => {
                free_frames(&frames);
                return Err(format!("memfs: {path}: no space ({needed} frames needed)"));
            }
        }
    }
    Ok(frames)
}

fn free_frames(frames: &[u64]) {
    for &frame in frames {
        if let Err(e) = frame_alloc::free_frame(frame) {
            log::info!("memfs: {e}");
        }
    }
}

/// Cell entry point: creates `/etc/motd`, `/tmp`, `/dev/frames` and `/dev/klog` if missing.
#[inline(never)]
pub fn init() -> Result<(), String> {
    if read("/etc/motd").is_err() {
        create("/etc/motd", MOTD.as_bytes())?;
    }
    let mut fs = FS.lock();
    fs.dir_mut("/tmp", &["tmp"], true)?;
    let specials: [(&str, Box<dyn Inode>); 2] = [
        ("/dev/frames", Box::new(DevFrames)),
        ("/dev/klog", Box::new(DevKlog)),
    ];
    for (path, node) in specials {
        if fs.lookup(path).is_err() {
            fs.insert(path, node).map_err(|(e, _)| e)?;
        }
    }
    let files = fs.root.count_files();
    drop(fs);
    log::info!("memfs: mounted, {files} files");
    Ok(())
}

/// Creates a regular file (and its missing parent directories); an existing path is an error.
#[inline(never)]
pub fn create(path: &str, data: &[u8]) -> Result<(), String> {
    components(path)?;
    let frames = alloc_frames(path, data.len())?;
    let file = Box::new(File {
        data: Vec::from(data),
        frames,
    });
    let inserted = FS.lock().insert(path, file);
    if let Err((e, node)) = inserted {
        free_frames(node.frames());
        return Err(e);
    }
    log::debug!("memfs: created {path} ({} bytes)", data.len());
    klog::push(4, "memfs", &format!("create {path} {} bytes", data.len()));
    Ok(())
}

/// Replaces the contents of an existing regular file.
#[inline(never)]
pub fn write(path: &str, data: &[u8]) -> Result<(), String> {
    components(path)?;
    let frames = alloc_frames(path, data.len())?;
    let stored = {
        let mut fs = FS.lock();
        match lookup_mut(&mut fs, path) {
            Ok(node) => node
                .store(data, frames)
                .map_err(|frames| (format!("memfs: {path}: not a writable file"), frames)),
            Err(e) => Err((e, frames)),
        }
    };
    match stored {
        Ok(old) => {
            free_frames(&old);
            log::debug!("memfs: wrote {path} ({} bytes)", data.len());
            Ok(())
        }
        Err((e, frames)) => {
            free_frames(&frames);
            Err(e)
        }
    }
}

fn lookup_mut<'a>(fs: &'a mut Fs, path: &str) -> Result<&'a mut dyn Inode, String> {
    let parts = components(path)?;
    let Some((name, parents)) = parts.split_last() else {
        return Err(format!("memfs: {path}: is a directory"));
    };
    let dir = fs.dir_mut(path, parents, false)?;
    Ok(dir
        .entries
        .get_mut(*name)
        .ok_or_else(|| format!("memfs: {path}: no such file or directory"))?
        .as_mut())
}

/// Reads a file's contents; for a directory, its listing (`name/` or `name <size>` per line).
#[inline(never)]
pub fn read(path: &str) -> Result<Vec<u8>, String> {
    let fs = FS.lock();
    let node = fs.lookup(path)?;
    if let Some(dir) = node.as_dir() {
        return Ok(Fs::listing(dir).into_bytes());
    }
    node.read().map_err(|e| format!("memfs: {path}: {e}"))
}

/// One line describing the node at `path`: whether it is a directory (with its entries, the
/// files below it and their frames) or a file (with its size and frames).
#[inline(never)]
pub fn stat(path: &str) -> Result<String, String> {
    FS.lock().stat(path)
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Reads a file's contents; panics with a message naming `path` when that fails.
#[inline(never)]
pub fn read_or_panic(path: &str) -> Vec<u8> {
    match read(path) {
        Ok(data) => data,
        Err(e) => panic!("memfs::read_or_panic({path:?}) failed: {e}"),
    }
}

/// Removes a file or an empty directory, freeing the file's frames.
#[inline(never)]
pub fn remove(path: &str) -> Result<(), String> {
    let node = FS.lock().unlink(path)?;
    free_frames(node.frames());
    log::debug!("memfs: removed {path}");
    klog::push(4, "memfs", &format!("remove {path}"));
    Ok(())
}

/// Creates a directory and its missing parents; a file on the way is an error.
#[inline(never)]
pub fn mkdir(path: &str) -> Result<(), String> {
    let parts = components(path)?;
    FS.lock().dir_mut(path, &parts, true).map(|_| ())
}

/// Sorted names in directory `dir`; subdirectory names end in `/`.
#[inline(never)]
pub fn list(dir: &str) -> Result<Vec<String>, String> {
    FS.lock().list(dir)
}

/// Number of non-directory nodes (regular and special files).
#[inline(never)]
pub fn file_count() -> usize {
    FS.lock().root.count_files()
}

/// Number of frames held by regular files.
#[inline(never)]
pub fn frames_used() -> usize {
    FS.lock().root.count_frames()
}

/// Which version of this cell is running, as one line.
#[inline(never)]
pub fn revision() -> String {
    String::from("memfs v2: in-memory file system with stat and directory listings")
}

// The interface, checked against cell-abi at compile time: hosts bind these functions by the
// types declared there.
const _: cell_abi::Init = init;
const _: cell_abi::memfs::Create = create;
const _: cell_abi::memfs::Write = write;
const _: cell_abi::memfs::Read = read;
const _: cell_abi::memfs::Stat = stat;
const _: cell_abi::memfs::ReadOrPanic = read_or_panic;
const _: cell_abi::memfs::Remove = remove;
const _: cell_abi::memfs::Mkdir = mkdir;
const _: cell_abi::memfs::List = list;
const _: cell_abi::memfs::FileCount = file_count;
const _: cell_abi::memfs::FramesUsed = frames_used;
const _: cell_abi::Revision = revision;

#[cfg(test)]
mod tests;
