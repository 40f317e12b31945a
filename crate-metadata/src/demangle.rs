//! Symbol names as people read them.
//!
//! User crates use the legacy mangling (`_ZN4klog4push17h0123456789abcdefE`) and the standard
//! library the v0 mangling (`_RNvNtCs…_5alloc3fmt6format`); both carry a hash. The hash of a
//! function changes when its signature changes, and every hash of a crate changes when the
//! crate's name, version, features, profile or toolchain change (DESIGN §3).

use alloc::format;
use alloc::string::String;

/// The demangled name with hashes (`klog::push::h0123456789abcdef`). Names that are not Rust
/// symbols come back unchanged.
pub fn demangle(name: &str) -> String {
    format!("{}", rustc_demangle::demangle(name))
}

/// The demangled path without hashes (`klog::push`): two symbols with the same path and
/// different mangled names differ only in their hashes.
pub fn path(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// The crate a symbol belongs to, from its demangled path (`alloc` for
/// `alloc::fmt::format::format_inner`); `None` for a name that is not a Rust path.
pub fn crate_of(name: &str) -> Option<String> {
    let p = path(name);
    let p = p.strip_prefix('<').unwrap_or(&p);
    let first = p.split("::").next()?;
    if first.is_empty() || first.len() == p.len() {
        return None;
    }
    Some(first.into())
}

/// Whether `crate_name` is one of the crates that ship with the toolchain.
pub fn is_toolchain_crate(crate_name: &str) -> bool {
    matches!(
        crate_name,
        "core"
            | "alloc"
            | "std"
            | "compiler_builtins"
            | "panic_unwind"
            | "hashbrown"
            | "std_detect"
            | "rustc_demangle"
            | "addr2line"
            | "gimli"
            | "miniz_oxide"
            | "object"
            | "memchr"
            | "adler2"
            | "unwind"
            | "__rustc"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_v0_paths() {
        let legacy = "_ZN4klog4push17h0123456789abcdefE";
        assert_eq!(path(legacy), "klog::push");
        assert_eq!(demangle(legacy), "klog::push::h0123456789abcdef");
        let v0 = "_RNvNvNtCslNYArtu3iFV_5alloc3fmt6format12format_inner";
        assert_eq!(path(v0), "alloc::fmt::format::format_inner");
        assert_eq!(crate_of(v0).as_deref(), Some("alloc"));
        assert_eq!(crate_of(legacy).as_deref(), Some("klog"));
        assert_eq!(path("memcpy"), "memcpy");
        assert_eq!(crate_of("memcpy"), None);
    }

    #[test]
    fn paths_equal_when_only_hashes_differ() {
        let a = "_ZN4klog4push17h0123456789abcdefE";
        let b = "_ZN4klog4push17hfedcba9876543210E";
        assert_ne!(a, b);
        assert_eq!(path(a), path(b));
    }
}
