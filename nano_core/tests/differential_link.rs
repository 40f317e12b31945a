//! Differential link test, in the spirit of the `wild` linker's tests: every real kernel and
//! library cell, and every dependency cell the boot loads, is linked twice, by our loader and by
//! the system linker, and every word our loader relocated is compared with what the system linker
//! and `ld.so` made of the same relocation (31,107 words at the time of writing).
//!
//! - **Ours**: `Kernel::boot` loads every cell (and its dependency cells) from `target/cells`.
//!   `cargo cell build` wrote most of the words already (the relocations the layout alone decides,
//!   `loader::prelink`), the load the rest: this test is what checks the build's values.
//! - **Theirs**: each object of `target/cells` (kernel, libs and deps) is linked on its own with
//!   `cc -shared` into `<cell>.so` (undefined symbols allowed), with a link map, and
//!   `dlopen`ed with `RTLD_NOW | RTLD_GLOBAL` in an order in which each one's undefined symbols are
//!   defined: by the `.so`s opened before it, or by this test executable (which exports `std`,
//!   `log` and `klog` like the base image) and its libraries. Linker options that keep the output
//!   comparable with our loader's semantics: `--no-relax` (a GOT load stays a GOT load),
//!   `-Bsymbolic-functions` (a cell calls its own functions, as ours binds them locally, while its
//!   statics may still be the executable's, as ours binds a shared kernel crate's statics to the
//!   base image's), `-z now` (every slot resolved at `dlopen`).
//!
//! For every relocation of every loaded section of the object, the field is read in both images,
//! and what it refers to is reconstructed, through the GOT slot, TLS pair or call stub it goes
//! through: a place in one of the cell's own sections (section index and offset: our layout and
//! the linker's differ, so addresses are mapped back through our section placement and the
//! linker's map file), or a symbol outside the cell (name and offset, through our registry and
//! `dladdr`: ours binds a cell's reference to another cell's copy, `ld.so` to the executable's
//! when it has one, so the names are compared, not the images), or a thread-local (the module's
//! owner and the offset). Any difference fails the test with the cell, section, offset, type and
//! symbol of the relocation.
//!
//! `.eh_frame` is compared entry by entry instead: the linker rewrites it (it merges CIEs and
//! re-encodes what it can), so its words have no counterpart at the same offset; every FDE's
//! `pc_begin`, `pc_range` and LSDA pointer, and every CIE's personality, must mean the same in both.

mod common;
#[path = "differential_link/eh_frame.rs"]
mod eh_frame;
#[path = "differential_link/memory.rs"]
mod memory;
#[path = "differential_link/sides.rs"]
mod sides;
#[path = "differential_link/system_linker.rs"]
mod system_linker;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use crate_metadata::{CellKind, Manifest, ManifestEntry, Origin};
use goblin::elf::Elf;
use nano_core::Kernel;

use eh_frame::{frame_entries, FrameEntry};
use memory::{canonical, read, read_i32, read_u64, try_read};
use sides::{meaning, Meaning, Ours, Rel, Side, Theirs};
use system_linker::{link, loaded_sections, open_all, SharedObject};

/// A relocation whose word differs.
struct Mismatch {
    cell: String,
    section: String,
    rel: Rel,
    ours: Meaning,
    theirs: Meaning,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}+{:#x} type {} against `{}`{:+}: ours {:?}, the system linker's {:?}",
            self.cell,
            self.section,
            self.rel.offset,
            self.rel.r_type,
            crate_metadata::demangle::demangle(&self.rel.symbol),
            self.rel.addend,
            self.ours,
            self.theirs
        )
    }
}

/// Cells call `__tls_get_addr` through a stub, and the loader serves it with its own function
/// (which forwards every module it did not create to glibc's): ours must reach that function,
/// theirs glibc's.
fn served_by_the_loader(kernel: &Kernel, rel: &Rel, field: u64, theirs: &Meaning) -> bool {
    use loader::platform::ThreadLocals;
    let ours_target = match rel.r_type {
        4 => {
            let stub = (field as i64 + read_i32(field) - rel.addend) as u64;
            let bytes = read::<8>(stub);
            let disp = i64::from(i32::from_le_bytes(bytes[2..6].try_into().unwrap()));
            read_u64((stub as i64 + 6 + disp) as u64)
        }
        9 | 41 | 42 => read_u64((field as i64 + read_i32(field) - rel.addend) as u64),
        _ => return false,
    };
    ours_target == kernel.system().platform().tls_get_addr() as u64
        && matches!(theirs, Meaning::External { names, offset: 0 } if names.iter().any(|n| n == "__tls_get_addr"))
}

/// Every relocation of a loaded section of `elf`.
fn relocations(elf: &Elf<'_>, loaded: &[usize]) -> Vec<Rel> {
    let mut out = Vec::new();
    for (rela_index, relocs) in &elf.shdr_relocs {
        let target = elf.section_headers[*rela_index].sh_info as usize;
        if !loaded.contains(&target) {
            continue;
        }
        for r in relocs.iter() {
            let symbol = elf.syms.get(r.r_sym).map_or(String::new(), |s| {
                let name = elf.strtab.get_at(s.st_name).unwrap_or("");
                if name.is_empty() {
                    let sec = elf.section_headers.get(s.st_shndx);
                    sec.and_then(|sh| elf.shdr_strtab.get_at(sh.sh_name))
                        .unwrap_or("")
                        .to_string()
                } else {
                    name.to_string()
                }
            });
            out.push(Rel {
                section: target,
                offset: r.r_offset,
                r_type: r.r_type,
                symbol,
                addend: r.r_addend.unwrap_or(0),
            });
        }
    }
    out
}

/// The element of mergeable section `section` (`SHF_MERGE`) at `offset`: a NUL-terminated string
/// for `SHF_STRINGS`, else `sh_entsize` bytes. `None` for any other section.
fn merged_element(elf: &Elf<'_>, object: &[u8], section: usize, offset: i64) -> Option<Vec<u8>> {
    use goblin::elf::section_header::{SHF_MERGE, SHF_STRINGS};
    let sh = &elf.section_headers[section];
    if sh.sh_flags & u64::from(SHF_MERGE) == 0 {
        return None;
    }
    let data = &object[sh.sh_offset as usize..][..sh.sh_size as usize];
    let tail = data.get(usize::try_from(offset).ok()?..)?;
    if sh.sh_flags & u64::from(SHF_STRINGS) != 0 {
        let end = tail.iter().position(|b| *b == 0)?;
        Some(tail[..=end].to_vec())
    } else {
        Some(tail.get(..sh.sh_entsize.max(1) as usize)?.to_vec())
    }
}

/// The width of the field of relocation type `r_type`.
fn width(r_type: u32) -> u64 {
    if r_type == 1 {
        8
    } else {
        4
    }
}

/// Compares every relocated word of `entry`'s cell; returns how many and the differences, or
/// `None` for a dependency cell the boot did not load (the base image provides it, or only a new
/// version or an application needs it).
fn compare_cell(
    kernel: &Kernel,
    entry: &ManifestEntry,
    object: &[u8],
    so: &SharedObject,
    modules: &HashMap<u64, String>,
) -> Option<(usize, Vec<Mismatch>)> {
    let elf = Elf::parse(object).expect("a cell object");
    let loaded_sections = loaded_sections(&elf);
    let loaded: Vec<usize> = loaded_sections.iter().map(|s| s.0).collect();
    let Some(id) = kernel
        .system()
        .registry()
        .cells()
        .find(|c| c.origin == Origin::Object && c.name == entry.name && c.version == entry.version)
        .map(|c| c.id)
    else {
        assert!(entry.kind == CellKind::Deps, "{} is loaded", entry.name);
        return None;
    };
    let cell = kernel.system().registry().cell(id).unwrap();
    // Most words were written by `cargo cell build` (the object's `.cell.prelink`), the rest by
    // the load: both are compared.
    assert!(
        cell.stats.prelinked > 0,
        "{} was loaded without its prelink",
        entry.name
    );
    assert!(
        cell.stats.names_from_build,
        "{} was described without its .cell.names",
        entry.name
    );
    // `describe` lists the loaded sections in header order, then the GOT and the stubs.
    let sections: HashMap<usize, (u64, u64)> = loaded_sections
        .iter()
        .zip(&cell.sections)
        .map(|((index, name, size), s)| {
            let shown = if name.is_empty() {
                format!("section#{index}")
            } else {
                name.clone()
            };
            assert_eq!(s.name, shown, "{}: section {index}", entry.name);
            (*index, (s.addr, *size))
        })
        .collect();
    let ours = Ours {
        kernel,
        cell: id,
        sections,
        loaded: loaded.clone(),
    };
    let theirs = Theirs {
        so,
        modules,
        loaded: loaded.clone(),
    };
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for rel in relocations(&elf, &loaded) {
        let section_name = loaded_sections
            .iter()
            .find(|s| s.0 == rel.section)
            .map(|s| s.1.clone())
            .unwrap_or_default();
        if section_name == ".eh_frame" {
            continue;
        }
        let (Some((our_base, _)), Some((their_base, _))) =
            (ours.section(rel.section), theirs.section(rel.section))
        else {
            panic!(
                "{}: section {section_name} is placed in both images",
                entry.name
            );
        };
        let (our_field, their_field) = (our_base + rel.offset, their_base + rel.offset);
        let w = width(rel.r_type);
        assert!(ours.contains_word(our_field, w, &loaded));
        assert!(theirs.contains_word(their_field, w, &loaded));
        let (a, a_addr) = meaning(&ours, &rel, our_field);
        let (b, b_addr) = meaning(&theirs, &rel, their_field);
        compared += 1;
        if a.agrees(&b) {
            continue;
        }
        if rel.symbol == "__tls_get_addr" && served_by_the_loader(kernel, &rel, our_field, &b) {
            continue;
        }
        // The same function, reached directly by one and through a PLT entry by the other (the
        // executable's canonical entry for an IFUNC such as `memcpy`).
        if let (Some(x), Some(y)) = (a_addr, b_addr) {
            if !matches!(a, Meaning::Internal { .. }) && canonical(x) == canonical(y) {
                continue;
            }
        }
        // A string or constant of a mergeable section, which the linker deduplicates: the same
        // bytes.
        // (The element is at the symbol's address for a named symbol, at the symbol plus the addend
        // for a section symbol.)
        if let (Meaning::Internal { section, offset }, Some(y)) = (&a, b_addr) {
            let candidates = [
                (*offset - rel.addend, y),
                (*offset, y.wrapping_add(rel.addend as u64)),
            ];
            let same = candidates.iter().any(|(ours_at, theirs_at)| {
                merged_element(&elf, object, *section, *ours_at).is_some_and(|expected| {
                    try_read(*theirs_at, expected.len()).as_deref() == Some(&expected[..])
                })
            });
            if same {
                continue;
            }
        }
        {
            mismatches.push(Mismatch {
                cell: entry.name.clone(),
                section: section_name,
                rel,
                ours: a,
                theirs: b,
            });
        }
    }
    // `.eh_frame`, entry by entry.
    let ours_eh = cell.sections.iter().find(|s| s.name == ".eh_frame");
    if let (Some(eh), Some((start, len))) = (ours_eh, so.eh_frame) {
        let mut a = frame_entries(&ours, eh.addr, eh.size);
        // The linker adds FDEs of its own (the PLT's, the start files'): only those of the
        // cell's code are compared.
        let mut b: Vec<FrameEntry> = frame_entries(&theirs, start, len)
            .into_iter()
            .filter(|e| matches!(e.begin, Meaning::Internal { .. }))
            .collect();
        assert!(!a.is_empty(), "{}: no FDE", entry.name);
        let key = |e: &FrameEntry| format!("{:?}", e.begin);
        a.sort_by_key(key);
        b.sort_by_key(key);
        compared += a.len();
        if a != b {
            mismatches.push(Mismatch {
                cell: entry.name.clone(),
                section: ".eh_frame".into(),
                rel: Rel {
                    section: 0,
                    offset: 0,
                    r_type: 2,
                    symbol: format!("{} FDEs against {}", a.len(), b.len()),
                    addend: 0,
                },
                ours: Meaning::Value(a.len() as i64),
                theirs: Meaning::Value(b.len() as i64),
            });
            let first = a.iter().zip(&b).find(|(x, y)| x != y);
            eprintln!("{}: the first FDE that differs: {first:?}", entry.name);
        }
    }
    Some((compared, mismatches))
}

#[test]
fn every_relocated_word_matches_the_system_linker() {
    let cells = common::cells_dir();
    let manifest: Manifest = common::manifest();
    nano_core::logger::install(log::LevelFilter::Off);
    let kernel = Kernel::boot(cells).expect("boot");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential_link");
    std::fs::create_dir_all(&dir).unwrap();

    // Every object the cells need, linked on its own.
    let entries: Vec<&ManifestEntry> = manifest
        .cells
        .iter()
        .filter(|e| matches!(e.kind, CellKind::Kernel | CellKind::Libs | CellKind::Deps))
        .collect();
    let mut linked: BTreeMap<String, (PathBuf, PathBuf)> = BTreeMap::new();
    for e in &entries {
        let object = cells.join(&e.object);
        linked.insert(e.object.clone(), link(&object, &dir));
    }
    let order: Vec<(String, PathBuf)> = linked
        .iter()
        .map(|(object, (so, _))| (object.clone(), so.clone()))
        .collect();
    let handles = open_all(&order);

    let mut objects: HashMap<String, SharedObject> = HashMap::new();
    let mut modules: HashMap<u64, String> = HashMap::new();
    for e in &entries {
        let (so_path, map) = &linked[&e.object];
        let bytes = std::fs::read(cells.join(&e.object)).unwrap();
        let elf = Elf::parse(&bytes).unwrap();
        let so_bytes = std::fs::read(so_path).unwrap();
        let so_elf = Elf::parse(&so_bytes).unwrap();
        let map = std::fs::read_to_string(map).unwrap();
        let file = Path::new(&e.object).file_name().unwrap().to_string_lossy();
        let so = SharedObject::new(handles[&e.object], &elf, &so_elf, &map, &file);
        if so.tls_module != 0 {
            modules.insert(so.tls_module, e.name.clone());
        }
        objects.insert(e.object.clone(), so);
    }

    let mut total = 0;
    let mut mismatches = Vec::new();
    for e in &entries {
        let bytes = std::fs::read(cells.join(&e.object)).unwrap();
        let so = &objects[&e.object];
        let Some((compared, mut bad)) = compare_cell(&kernel, e, &bytes, so, &modules) else {
            eprintln!("{:<20} not loaded by the boot", e.object);
            continue;
        };
        assert!(
            compared > 0 || e.kind == CellKind::Deps,
            "{}: no relocation compared",
            e.name
        );
        eprintln!("{:<36} {compared:>6} relocated words compared", e.object);
        total += compared;
        mismatches.append(&mut bad);
    }
    eprintln!(
        "{total} relocated words compared, {} differ",
        mismatches.len()
    );
    if let Ok(path) = std::env::var("DIFFERENTIAL_LINK_REPORT") {
        let all: Vec<String> = mismatches.iter().map(|m| m.to_string()).collect();
        std::fs::write(path, all.join("\n")).unwrap();
    }
    let shown: Vec<String> = mismatches.iter().take(40).map(|m| m.to_string()).collect();
    assert!(
        mismatches.is_empty(),
        "{} of {total} relocated words differ from the system linker's:\n{}",
        mismatches.len(),
        shown.join("\n")
    );
}
