//! The system linker's side: each object linked on its own into a shared object with a link map,
//! every shared object `dlopen`ed, and where each input section of the object went.

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use goblin::elf::section_header::{SHF_ALLOC, SHT_GROUP, SHT_REL, SHT_RELA};
use goblin::elf::Elf;

/// A `.so` linked from one cell object and `dlopen`ed.
pub(crate) struct SharedObject {
    /// Where each loaded input section went (header index -> address, size), from the link map.
    pub(crate) sections: HashMap<usize, (u64, u64)>,
    /// The `.so`'s TLS module id, 0 when it has no thread-locals.
    pub(crate) tls_module: u64,
    /// Its `.eh_frame` output section: address and length.
    pub(crate) eh_frame: Option<(u64, u64)>,
}

/// The loaded input sections of an object: header index, name, size.
pub(crate) fn loaded_sections(elf: &Elf<'_>) -> Vec<(usize, String, u64)> {
    elf.section_headers
        .iter()
        .enumerate()
        .filter(|(_, sh)| {
            sh.sh_flags & u64::from(SHF_ALLOC) != 0
                && !matches!(sh.sh_type, SHT_GROUP | SHT_REL | SHT_RELA)
        })
        .map(|(i, sh)| {
            let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("").to_string();
            (i, name, sh.sh_size)
        })
        .collect()
}

/// The input sections of `file` in a GNU ld link map, in map order: name, address, size.
pub(crate) fn map_entries(map: &str, file: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    let body = map
        .split_once("Linker script and memory map")
        .map_or(map, |(_, b)| b);
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    for line in body.lines() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let input = line.starts_with(' ') && !line.starts_with("  ");
        match tokens.as_slice() {
            [name] if input && name.starts_with('.') => pending = Some((*name).to_string()),
            [name, addr, size, f] if input && name.starts_with('.') && f.ends_with(file) => {
                if let (Some(a), Some(s)) = (hex(addr), hex(size)) {
                    out.push(((*name).to_string(), a, s));
                }
                pending = None;
            }
            [addr, size, f] if pending.is_some() && f.ends_with(file) => {
                if let (Some(a), Some(s)) = (hex(addr), hex(size)) {
                    out.push((pending.take().unwrap_or_default(), a, s));
                }
            }
            _ => pending = None,
        }
    }
    out
}

/// Links `object` into `<dir>/<stem>.so` with a link map; returns both paths.
pub(crate) fn link(object: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let stem = object.file_stem().unwrap().to_string_lossy().into_owned();
    let so = dir.join(format!("{stem}.so"));
    let map = dir.join(format!("{stem}.map"));
    let out = Command::new("cc")
        .args(["-shared", "-o"])
        .arg(&so)
        .arg(object)
        .arg("-Wl,--no-relax")
        .arg("-Wl,-Bsymbolic-functions")
        .arg("-Wl,-z,now")
        .arg(format!("-Wl,-Map={}", map.display()))
        .output()
        .expect("cc runs");
    assert!(
        out.status.success(),
        "cc -shared {}: {}",
        object.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (so, map)
}

/// `dlopen`s every `.so`, each once every one it needs is open; returns the handles by cell name.
pub(crate) fn open_all(objects: &[(String, PathBuf)]) -> HashMap<String, *mut c_void> {
    let mut open = HashMap::new();
    let mut waiting: Vec<&(String, PathBuf)> = objects.iter().collect();
    while !waiting.is_empty() {
        let before = waiting.len();
        let mut errors = Vec::new();
        waiting.retain(|(name, so)| {
            let path = CString::new(so.to_str().unwrap()).unwrap();
            // SAFETY: `path` is NUL-terminated. The object runs its `.init_array` (what the cell
            // would run when loaded), which only initializes its own state.
            let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            if handle.is_null() {
                // SAFETY: dlerror has no preconditions; it returns a C string or null.
                let e = unsafe { libc::dlerror() };
                if !e.is_null() {
                    // SAFETY: not null, so a NUL-terminated string valid until the next dl* call;
                    // copied at once.
                    errors.push(unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned());
                }
                return true;
            }
            open.insert(name.clone(), handle);
            false
        });
        assert!(
            waiting.len() < before,
            "no .so can be opened any more: {errors:?}"
        );
    }
    open
}

impl SharedObject {
    pub(crate) fn new(
        handle: *mut c_void,
        elf: &Elf<'_>,
        so: &Elf<'_>,
        map: &str,
        file: &str,
    ) -> SharedObject {
        #[repr(C)]
        struct LinkMap {
            l_addr: usize,
        }
        let mut lm: *mut LinkMap = std::ptr::null_mut();
        // SAFETY: `handle` is a live `dlopen` handle; RTLD_DI_LINKMAP writes one pointer to `lm`.
        let rc = unsafe {
            libc::dlinfo(
                handle,
                libc::RTLD_DI_LINKMAP,
                (&raw mut lm).cast::<c_void>(),
            )
        };
        assert!(rc == 0 && !lm.is_null(), "dlinfo LINKMAP");
        // SAFETY: `lm` is the object's `struct link_map`, whose first field is `l_addr`.
        let bias = unsafe { (*lm).l_addr } as u64;
        let mut tls_module: usize = 0;
        // SAFETY: RTLD_DI_TLS_MODID writes a `size_t` (0 without thread-locals) to `tls_module`.
        unsafe {
            libc::dlinfo(
                handle,
                libc::RTLD_DI_TLS_MODID,
                (&raw mut tls_module).cast::<c_void>(),
            )
        };
        let mut entries = map_entries(map, file);
        let mut sections = HashMap::new();
        for (index, name, size) in loaded_sections(elf) {
            // The next map entry of that name (the map lists one file's same-named sections in
            // file order).
            if let Some(at) = entries.iter().position(|(n, _, _)| *n == name) {
                let (_, addr, mapped_size) = entries.remove(at);
                if mapped_size == size {
                    sections.insert(index, (bias + addr, size));
                }
            }
        }
        let eh_frame = so
            .section_headers
            .iter()
            .find(|sh| so.shdr_strtab.get_at(sh.sh_name) == Some(".eh_frame"))
            .map(|sh| (bias + sh.sh_addr, sh.sh_size));
        SharedObject {
            sections,
            tls_module: tls_module as u64,
            eh_frame,
        }
    }
}
