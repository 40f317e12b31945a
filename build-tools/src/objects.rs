//! Reading what rustc produced: the one object inside a cell's rlib, and the symbols it exports.
//!
//! A cell is built with one codegen unit (DESIGN §3), so its rlib is an `ar` archive with the
//! crate metadata (`lib.rmeta`) and exactly one `*.rcgu.o` member. That member is the cell.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use goblin::archive::Archive;
use goblin::elf::header::ET_REL;
use goblin::elf::section_header::SHN_UNDEF;
use goblin::elf::sym::{
    Sym, STB_GLOBAL, STB_WEAK, STT_FILE, STT_SECTION, STV_HIDDEN, STV_INTERNAL,
};
use goblin::elf::Elf;

/// The names of the object members of an `ar` archive (those ending in `.o`), in archive order.
pub fn object_members(archive_bytes: &[u8]) -> Result<Vec<String>> {
    let archive = Archive::parse(archive_bytes).context("not a valid ar archive")?;
    Ok(archive
        .members()
        .into_iter()
        .filter(|name| name.ends_with(".o"))
        .map(str::to_owned)
        .collect())
}

/// The single object inside the rlib `archive_bytes` of the crate `crate_name`.
///
/// Fails, naming the crate and the archive's members, when the archive holds no object or more
/// than one (several objects mean the crate was built with more than one codegen unit).
pub fn extract_single_object(archive_bytes: &[u8], crate_name: &str) -> Result<Vec<u8>> {
    let archive = Archive::parse(archive_bytes)
        .with_context(|| format!("the rlib of `{crate_name}` is not a valid ar archive"))?;
    let members = archive.members();
    let objects: Vec<&str> = members
        .iter()
        .copied()
        .filter(|name| name.ends_with(".o"))
        .collect();
    let member = match objects.as_slice() {
        [one] => *one,
        [] => bail!(
            "the rlib of `{crate_name}` holds no object file (members: {})",
            members.join(", ")
        ),
        _ => bail!(
            "the rlib of `{crate_name}` holds {} object files, a cell needs exactly one \
             (build it with codegen-units = 1); members: {}",
            objects.len(),
            members.join(", ")
        ),
    };
    let bytes = archive
        .extract(member, archive_bytes)
        .with_context(|| format!("cannot extract `{member}` from the rlib of `{crate_name}`"))?;
    Ok(bytes.to_vec())
}

/// The cell object of crate `crate_name` from its rlib `archive_bytes`: the single object
/// ([`extract_single_object`]) with its sections merged by kind, then prelinked
/// ([`crate::merge`]).
pub fn cell_object(archive_bytes: &[u8], crate_name: &str) -> Result<Vec<u8>> {
    let object = extract_single_object(archive_bytes, crate_name)?;
    let merged = crate::merge::merge_sections(&object, crate_name)?;
    crate::merge::prelink(&merged, crate_name)
}

/// Whether the symbol `sym` is one that other cells can bind to: defined in the object, global or
/// weak, not hidden (or internal), and neither a section nor a file symbol.
pub fn is_export(sym: &Sym) -> bool {
    let bind = sym.st_bind();
    let typ = sym.st_type();
    let vis = sym.st_visibility();
    sym.st_shndx != SHN_UNDEF as usize
        && (bind == STB_GLOBAL || bind == STB_WEAK)
        && vis != STV_HIDDEN
        && vis != STV_INTERNAL
        && typ != STT_SECTION
        && typ != STT_FILE
}

/// The mangled names of the symbols the relocatable ELF object `object` exports (see
/// [`is_export`]), sorted and without duplicates.
pub fn exported_symbols(object: &[u8]) -> Result<Vec<String>> {
    let elf = Elf::parse(object).context("not a valid ELF object")?;
    if elf.header.e_type != ET_REL {
        bail!(
            "not a relocatable object (ELF type {}, expected ET_REL)",
            elf.header.e_type
        );
    }
    let mut names = Vec::new();
    for sym in elf.syms.iter().filter(is_export) {
        let name = elf
            .strtab
            .get_at(sym.st_name)
            .with_context(|| format!("symbol name at string offset {} is invalid", sym.st_name))?;
        if !name.is_empty() {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// SHA-256 of `bytes` as lowercase hex, as the manifest and the loader write it (one function).
pub use loader::sha256;

/// The hash cargo puts in an rlib's file name (`libfoo-0123abcd.rlib` gives `0123abcd`): it is
/// derived from what makes the crate's identity (package, version, features, dependencies,
/// profile), so two builds with the same one share the symbol hashes.
pub fn rlib_hash(rlib: &Path) -> Option<&str> {
    let stem = rlib.file_stem()?.to_str()?;
    Some(stem.rsplit_once('-')?.1)
}

/// The rlib with the hash in its file name that `rlib` is: itself, or for cargo's uplifted copy
/// `<profile>/lib<crate>.rlib` (what cargo reports for workspace members), the file in
/// `<profile>/deps/` that it is a hard link to (or, failing that, the only one with its bytes).
pub fn hashed_rlib(rlib: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if rlib_hash(rlib).is_some() {
        return Some(rlib.to_path_buf());
    }
    let prefix = format!("{}-", rlib.file_stem()?.to_str()?);
    let meta = fs::metadata(rlib).ok()?;
    let mut candidates = Vec::new();
    for entry in fs::read_dir(rlib.parent()?.join("deps")).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".rlib") {
            let other = entry.metadata().ok()?;
            if (other.dev(), other.ino()) == (meta.dev(), meta.ino()) {
                return Some(entry.path());
            }
            candidates.push(entry.path());
        }
    }
    let bytes = fs::read(rlib).ok()?;
    let mut same = candidates
        .into_iter()
        .filter(|c| fs::read(c).is_ok_and(|b| b == bytes));
    match (same.next(), same.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// The path of a mangled Rust symbol without its hash (`frame_alloc::alloc_frame`), as the loader
/// compares them (`crate_metadata::demangle::path`), or `None` for a name that is not mangled.
pub fn mangled_path(name: &str) -> Option<String> {
    (name.starts_with("_ZN") || name.starts_with("_R"))
        .then(|| crate_metadata::demangle::path(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use goblin::elf::sym::{
        STB_LOCAL, STT_FUNC, STT_NOTYPE, STT_OBJECT, STV_DEFAULT, STV_PROTECTED,
    };

    /// A minimal GNU `ar` archive with the given members (names up to 15 characters).
    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"!<arch>\n".to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                format!("{name}/"),
                0,
                0,
                0,
                644,
                data.len()
            );
            assert_eq!(header.len(), 60);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn sym(bind: u8, typ: u8, vis: u8, shndx: usize) -> Sym {
        Sym {
            st_name: 0,
            st_info: (bind << 4) | typ,
            st_other: vis,
            st_shndx: shndx,
            st_value: 0,
            st_size: 0,
        }
    }

    #[test]
    fn extracts_the_single_object() {
        let archive = ar(&[("lib.rmeta", b"meta"), ("a.rcgu.o", b"object!")]);
        assert_eq!(object_members(&archive).unwrap(), ["a.rcgu.o"]);
        assert_eq!(extract_single_object(&archive, "c").unwrap(), b"object!");
    }

    #[test]
    fn no_object_is_an_error_naming_crate_and_members() {
        let archive = ar(&[("lib.rmeta", b"meta")]);
        let err = format!(
            "{:#}",
            extract_single_object(&archive, "lonely").unwrap_err()
        );
        assert!(
            err.contains("`lonely`") && err.contains("lib.rmeta"),
            "{err}"
        );
    }

    #[test]
    fn two_objects_is_an_error_about_codegen_units() {
        let archive = ar(&[("lib.rmeta", b"m"), ("a.o", b"1"), ("b.o", b"2")]);
        let err = format!(
            "{:#}",
            extract_single_object(&archive, "split").unwrap_err()
        );
        assert!(
            err.contains("`split`") && err.contains("codegen-units"),
            "{err}"
        );
        assert!(err.contains("a.o") && err.contains("b.o"), "{err}");
    }

    #[test]
    fn garbage_is_not_an_archive() {
        let err = format!("{:#}", extract_single_object(b"nope", "junk").unwrap_err());
        assert!(err.contains("`junk`"), "{err}");
    }

    #[test]
    fn export_selection() {
        assert!(is_export(&sym(STB_GLOBAL, STT_FUNC, STV_DEFAULT, 3)));
        assert!(is_export(&sym(STB_WEAK, STT_OBJECT, STV_DEFAULT, 3)));
        assert!(is_export(&sym(STB_GLOBAL, STT_NOTYPE, STV_PROTECTED, 3)));
        assert!(
            !is_export(&sym(STB_GLOBAL, STT_FUNC, STV_DEFAULT, 0)),
            "undefined"
        );
        assert!(
            !is_export(&sym(STB_LOCAL, STT_FUNC, STV_DEFAULT, 3)),
            "local"
        );
        assert!(
            !is_export(&sym(STB_WEAK, STT_OBJECT, STV_HIDDEN, 3)),
            "hidden"
        );
        assert!(
            !is_export(&sym(STB_GLOBAL, STT_FUNC, STV_INTERNAL, 3)),
            "internal"
        );
        assert!(!is_export(&sym(STB_GLOBAL, STT_SECTION, STV_DEFAULT, 3)));
        assert!(!is_export(&sym(STB_GLOBAL, STT_FILE, STV_DEFAULT, 3)));
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn rlib_hashes_and_uplifted_copies() {
        assert_eq!(
            rlib_hash(Path::new("x/libfoo_bar-0a1b2c.rlib")),
            Some("0a1b2c")
        );
        assert_eq!(rlib_hash(Path::new("x/libfoo_bar.rlib")), None);
        let dir = std::env::temp_dir().join(format!("upgrades-rlib-{}", std::process::id()));
        let deps = dir.join("deps");
        fs::create_dir_all(&deps).unwrap();
        fs::write(deps.join("libfoo-1111.rlib"), b"old").unwrap();
        fs::write(deps.join("libfoo-2222.rlib"), b"new").unwrap();
        fs::write(deps.join("libfoobar-3333.rlib"), b"new").unwrap();
        // A hard link, as cargo uplifts.
        fs::hard_link(deps.join("libfoo-2222.rlib"), dir.join("libfoo.rlib")).unwrap();
        assert_eq!(
            hashed_rlib(&dir.join("libfoo.rlib")),
            Some(deps.join("libfoo-2222.rlib"))
        );
        // A copy: found by its bytes.
        fs::remove_file(dir.join("libfoo.rlib")).unwrap();
        fs::write(dir.join("libfoo.rlib"), b"old").unwrap();
        assert_eq!(
            hashed_rlib(&dir.join("libfoo.rlib")),
            Some(deps.join("libfoo-1111.rlib"))
        );
        fs::write(dir.join("libfoo.rlib"), b"neither").unwrap();
        assert_eq!(hashed_rlib(&dir.join("libfoo.rlib")), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mangled_paths_are_the_loaders() {
        assert_eq!(
            mangled_path("_ZN11frame_alloc11alloc_frame17h0123456789abcdefE").as_deref(),
            Some("frame_alloc::alloc_frame")
        );
        assert_eq!(
            mangled_path("_ZN5memfs2FS17hfedcba9876543210E").as_deref(),
            Some("memfs::FS")
        );
        assert_eq!(
            mangled_path("_RNvNtCslNYArtu3iFV_5alloc3fmt6format").as_deref(),
            Some("alloc::fmt::format")
        );
        assert_eq!(mangled_path("rust_begin_unwind"), None);
        assert_eq!(mangled_path("memcpy"), None);
    }
}
