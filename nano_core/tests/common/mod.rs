//! Shared by the integration tests: the cells, built once per test binary by the project's own
//! build tool (a second build in the same run finds nothing to do).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub mod server;

use build_tools::build::{build_cells, BuildOptions};
use crate_metadata::{CellKind, Manifest};

/// `target/cells`, built by `cargo cell build`'s library on first use.
pub fn cells_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("nano_core sits in the workspace")
            .to_path_buf();
        let report = build_cells(&BuildOptions {
            workspace_root: Some(root),
            target_dir: None,
            quiet: true,
        })
        .unwrap_or_else(|e| panic!("building the cells failed: {e:#}"));
        report.cells_dir
    })
}

/// The manifest the build wrote.
pub fn manifest() -> Manifest {
    build_tools::manifest::read(cells_dir()).expect("the manifest")
}

/// Copies the objects and the manifest of `from` into `to`; returns the manifest.
pub fn copy_cells(from: &Path, to: &Path) -> Manifest {
    let manifest = build_tools::manifest::read(from).expect("the manifest");
    for e in &manifest.cells {
        let dest = to.join(&e.object);
        std::fs::create_dir_all(dest.parent().expect("a kind dir")).expect("mkdir");
        std::fs::copy(from.join(&e.object), &dest).expect("copy object");
    }
    build_tools::manifest::write(to, &manifest).expect("copy manifest");
    manifest
}

/// The bytes of a cell's object.
pub fn object(kind: CellKind, name: &str) -> Vec<u8> {
    let m = manifest();
    let entry = m
        .get(kind, name)
        .unwrap_or_else(|| panic!("no {} cell `{name}` in the manifest", kind.dir()));
    std::fs::read(cells_dir().join(&entry.object)).expect("object readable")
}

/// `/proc/self/maps` lines that are both writable and executable.
pub fn wx_mappings() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| {
            let perms = l.split_whitespace().nth(1).unwrap_or("");
            perms.contains('w') && perms.contains('x')
        })
        .map(str::to_string)
        .collect()
}

/// The loader's own mappings on a platform: (count, bytes).
pub trait LiveMappings {
    /// What the platform has mapped and not unmapped.
    fn live(&self) -> (usize, usize);
}

impl LiveMappings for loader::hosted::Hosted {
    fn live(&self) -> (usize, usize) {
        self.live_mappings()
    }
}

impl LiveMappings for flaky::Flaky {
    fn live(&self) -> (usize, usize) {
        self.inner().live_mappings()
    }
}

/// A platform that fails the Nth memory call (map or protect), counting from 0, to show that
/// every failure leaves the system as it was. Everything else is the hosted platform.
pub mod flaky {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use loader::hosted::Hosted;
    use loader::overlay::{Layer, Overlay};
    use loader::platform::{Memory, PlatformError, Protection};

    /// The hosted platform with an injectable memory failure.
    pub type Flaky = Overlay<Hosted, FailNth>;

    /// A hosted platform that never fails until [`FailNth::fail_call`] says so.
    pub fn new() -> Flaky {
        let fail = FailNth {
            calls: AtomicUsize::new(0),
            fail_at: AtomicUsize::new(usize::MAX),
        };
        Overlay::new(Hosted::new().expect("hosted platform"), fail)
    }

    /// Fails the Nth memory call.
    pub struct FailNth {
        calls: AtomicUsize,
        fail_at: AtomicUsize,
    }

    impl FailNth {
        /// Fails the `n`th memory call from now (0 = the next one); `None` = never.
        pub fn fail_call(&self, n: Option<usize>) {
            self.calls.store(0, Ordering::SeqCst);
            self.fail_at
                .store(n.unwrap_or(usize::MAX), Ordering::SeqCst);
        }

        /// Memory calls made since the last [`FailNth::fail_call`].
        pub fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn tick(&self) -> bool {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            n == self.fail_at.load(Ordering::SeqCst)
        }
    }

    impl Layer<Hosted> for FailNth {
        fn map(&self, inner: &Hosted, len: usize) -> Result<*mut u8, PlatformError> {
            if self.tick() {
                return Err(PlatformError::OutOfMemory { len });
            }
            inner.map(len)
        }
        fn protect(
            &self,
            inner: &Hosted,
            addr: *mut u8,
            len: usize,
            prot: Protection,
        ) -> Result<(), PlatformError> {
            if self.tick() {
                return Err(PlatformError::Protect {
                    addr: addr as usize,
                    len,
                    code: 12,
                });
            }
            inner.protect(addr, len, prot)
        }
    }
}

/// `object` with its `.cell.prelink` (the relocations `cargo cell build` applied) made for another
/// layout: the load ignores it and applies every relocation.
pub fn applying_every_relocation(mut object: Vec<u8>) -> Vec<u8> {
    let table = object.windows(8).rposition(|w| w == b"CELLPRE2");
    let digest = table.expect("cell objects are prelinked") + 8;
    object[digest] ^= 1;
    object
}

/// Renames a symbol in an object's string table by changing one byte of its name at `offset`
/// (counted from the start of the name); returns the new bytes.
pub fn rename_symbol(bytes: &[u8], name: &str, offset_in_name: usize, to: u8) -> Vec<u8> {
    let elf = goblin::elf::Elf::parse(bytes).expect("an ELF object");
    let symtab = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB)
        .expect("a symbol table");
    let strtab = elf.section_headers[symtab.sh_link as usize].sh_offset as usize;
    let sym = elf
        .syms
        .iter()
        .find(|s| elf.strtab.get_at(s.st_name) == Some(name))
        .unwrap_or_else(|| panic!("no symbol {name}"));
    let mut out = bytes.to_vec();
    out[strtab + sym.st_name + offset_in_name] = to;
    out
}

/// The mangled name of the symbol whose demangled path is `path` in an object.
pub fn mangled(bytes: &[u8], path: &str) -> String {
    let elf = goblin::elf::Elf::parse(bytes).expect("an ELF object");
    elf.syms
        .iter()
        .filter(|s| s.st_shndx != 0)
        .filter_map(|s| elf.strtab.get_at(s.st_name))
        .find(|n| crate_metadata::demangle::path(n) == path)
        .unwrap_or_else(|| panic!("no symbol {path}"))
        .to_string()
}

/// Sets the `st_size` of the symbol `name` in an object.
pub fn resize_symbol(bytes: &[u8], name: &str, size: u64) -> Vec<u8> {
    let elf = goblin::elf::Elf::parse(bytes).expect("an ELF object");
    let symtab = elf
        .section_headers
        .iter()
        .find(|s| s.sh_type == goblin::elf::section_header::SHT_SYMTAB)
        .expect("a symbol table");
    let index = elf
        .syms
        .iter()
        .position(|s| elf.strtab.get_at(s.st_name) == Some(name))
        .unwrap_or_else(|| panic!("no symbol {name}"));
    let at = symtab.sh_offset as usize + index * 24 + 16;
    let mut out = bytes.to_vec();
    out[at..at + 8].copy_from_slice(&size.to_le_bytes());
    out
}
