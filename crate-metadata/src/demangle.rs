//! Symbol names as people read them.
//!
//! User crates use the legacy mangling (`_ZN4klog4push17h0123456789abcdefE`) and the standard
//! library the v0 mangling (`_RNvNtCs…_5alloc3fmt6format`); both carry a hash. The hash of a
//! function changes when its signature changes, and every hash of a crate changes when the
//! crate's name, version, features, profile or toolchain change (DESIGN §3).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The demangled name with hashes (`klog::push::h0123456789abcdef`). Names that are not Rust
/// symbols come back unchanged.
pub fn demangle(name: &str) -> String {
    format!("{}", rustc_demangle::demangle(name))
}

/// The demangled path without hashes (`klog::push`): two symbols with the same path and
/// different mangled names differ only in their hashes.
pub fn path(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    path_into(name, &mut out);
    // Everything `path_into` appends is UTF-8 (ASCII from the legacy path, a `String` otherwise).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends [`path`] of `name` to `out`, as UTF-8 bytes, without a string of its own: the debuggers'
/// symbol file writes every function's path into its string table this way.
pub fn path_into(name: &str, out: &mut Vec<u8>) {
    let start = out.len();
    if legacy_path(name, out).is_none() {
        out.truncate(start);
        // `Vec<u8>` is a `fmt::Write` sink only through a `String`; the slow path is rare.
        out.extend_from_slice(format!("{:#}", rustc_demangle::demangle(name)).as_bytes());
    }
}

/// Appends [`path`] of a legacy-mangled name (`_ZN` identifiers `E`, nothing after the `E`) to
/// `out`, exactly as `rustc_demangle` prints it with `{:#}`: the identifiers joined by `::`, the
/// trailing hash left out, the escapes of generic paths (`$LT$`, `$u20$`, `..`) undone. It writes
/// bytes straight into the caller's buffer instead of going through `rustc_demangle`'s formatter,
/// which cost about 1,400 instructions a name (a load names every function of a cell for the
/// debuggers, BENCHMARKS.md). `None`, with `out` partly written, for anything it does not handle
/// exactly as `rustc_demangle` would (v0 names, suffixes, leading zeros, escapes other than the
/// ones rustc writes), which `rustc_demangle` then handles; tests compare both on every symbol of
/// every cell the build makes.
fn legacy_path(name: &str, out: &mut Vec<u8>) -> Option<()> {
    let mut rest = name.strip_prefix("_ZN")?.as_bytes();
    // The path is never longer than the mangled name: room for it at once, written by index and
    // cut to length at the end (a push per byte checked the capacity every time).
    let start = out.len();
    out.resize(start + rest.len(), 0);
    let buf = &mut out[start..];
    let mut w = 0;
    let mut parts = 0;
    while rest != b"E" {
        let mut len = 0usize;
        let mut digits = 0;
        while let Some(d) = rest.get(digits).filter(|d| d.is_ascii_digit()) {
            if digits == 9 || (digits == 0 && *d == b'0') {
                return None;
            }
            len = len * 10 + usize::from(d - b'0');
            digits += 1;
        }
        if digits == 0 {
            return None;
        }
        let ident = rest.get(digits..digits + len)?;
        rest = &rest[digits + len..];
        // As rustc_demangle's `is_rust_hash`: `h` and hex digits, as the last identifier.
        if rest == b"E" && is_hash(ident) {
            break;
        }
        if parts > 0 {
            buf.get_mut(w..w + 2)?.copy_from_slice(b"::");
            w += 2;
        }
        w = unescape(ident, buf, w)?;
        parts += 1;
    }
    out.truncate(start + w);
    (parts > 0).then_some(())
}

fn is_hash(ident: &[u8]) -> bool {
    ident.first() == Some(&b'h') && ident[1..].iter().all(u8::is_ascii_hexdigit)
}

/// Writes one legacy identifier into `buf` from `w` on, with its escapes undone (rustc_demangle's
/// legacy `Display`), and returns where it ends; `None` for a byte or an escape it would print
/// otherwise (non-ASCII, an unclosed `$`, an unknown escape, a `$u..$` that is not a printable
/// ASCII character).
fn unescape(ident: &[u8], buf: &mut [u8], mut w: usize) -> Option<usize> {
    if !ident.is_ascii() {
        return None;
    }
    let mut i = usize::from(ident.starts_with(b"_$"));
    while let Some(&b) = ident.get(i) {
        match b {
            b'.' if ident.get(i + 1) == Some(&b'.') => {
                buf.get_mut(w..w + 2)?.copy_from_slice(b"::");
                w += 2;
                i += 2;
            }
            b'$' => {
                let (c, used) = escape_char(&ident[i + 1..])?;
                *buf.get_mut(w)? = c;
                w += 1;
                i += used;
            }
            _ => {
                *buf.get_mut(w)? = b;
                w += 1;
                i += 1;
            }
        }
    }
    Some(w)
}

/// The character an escape stands for (`escape` follows its opening `$`), and the escape's length
/// with both `$`.
fn escape_char(escape: &[u8]) -> Option<(u8, usize)> {
    let two = |c: u8| Some((c, 4));
    match escape {
        [b'S', b'P', b'$', ..] => two(b'@'),
        [b'B', b'P', b'$', ..] => two(b'*'),
        [b'R', b'F', b'$', ..] => two(b'&'),
        [b'L', b'T', b'$', ..] => two(b'<'),
        [b'G', b'T', b'$', ..] => two(b'>'),
        [b'L', b'P', b'$', ..] => two(b'('),
        [b'R', b'P', b'$', ..] => two(b')'),
        [b'C', b'$', ..] => Some((b',', 3)),
        [b'u', hi, lo, b'$', ..] => {
            let digit = |d: u8| match d {
                b'0'..=b'9' => Some(d - b'0'),
                b'a'..=b'f' => Some(d - b'a' + 10),
                _ => None,
            };
            let c = digit(*hi)? << 4 | digit(*lo)?;
            (b' '..=b'~').contains(&c).then_some((c, 5))
        }
        _ => None,
    }
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
    fn the_legacy_path_is_what_rustc_demangle_prints() {
        for name in [
            "_ZN4klog4push17h0123456789abcdefE",
            "_ZN5memfs2fs4File4read17hfedcba9876543210E",
            "_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$..$u7b$$u7b$closure$u7d$$u7d$$GT$17h0123456789abcdefE",
            "_ZN4klog4pushE",
            "_ZN4klog17h0123456789abcdefE",
            "_ZN17h0123456789abcdefE",
            "_ZN4klog1hE",
            "_ZN4klog4push17h0123456789abcdefE.llvm.123",
            "_ZN4klog4push17h0123456789abcdef",
            "_ZN4klog04pushE",
            "_ZN4klog99pushE",
            "_ZNE",
            "_ZN1_4_a_bE",
            "_ZN3foo17h0123456789abcdef3barE",
            "memcpy",
            "_RNvNvNtCslNYArtu3iFV_5alloc3fmt6format12format_inner",
            "_ZN58_$LT$$RF$str$u20$as$u20$regex..regex..string..Replacer$GT$12no_expansion17h8fa245d397781553E",
            "_ZN5alloc4sync16Arc$LT$T$C$A$GT$9drop_slow17he8d187c3913a31b2E",
            "_ZN4core3ptr8_$LT$a$GT$3fooE",
            "_ZN3a$SP$b3c$BP$d4e$LP$$RP$E",
            "_ZN1.2..3...E",
            "_ZN7a$u7e$b$u7f$E",
            "_ZN9a$u1f600$bE",
            "_ZN6a$XY$bcE",
            "_ZN4a$bcE",
            "_ZN5a$u7G$E",
            "_ZN6h\u{e9}llo3fooE",
            "_ZN3$u20$E",
            "_ZN2_$E",
        ] {
            let slow = format!("{:#}", rustc_demangle::demangle(name));
            assert_eq!(path(name), slow, "{name}");
            let mut fast = Vec::new();
            if legacy_path(name, &mut fast).is_some() {
                assert_eq!(String::from_utf8(fast).unwrap(), slow, "{name}");
            }
        }
        // The generic names of large crates take the fast path too; what it does not know goes
        // to rustc_demangle.
        for fast in [
            "_ZN4klog4push17h0123456789abcdefE",
            "_ZN5alloc4sync16Arc$LT$T$C$A$GT$9drop_slow17he8d187c3913a31b2E",
            "_ZN4core3ptr85drop_in_place$LT$std..rt..lang_start$LT$$LP$$RP$$GT$..$u7b$$u7b$closure$u7d$$u7d$$GT$17h0123456789abcdefE",
        ] {
            assert!(legacy_path(fast, &mut Vec::new()).is_some(), "{fast}");
        }
        for slow in [
            "_ZN7a$u7e$b$u7f$E",
            "_ZN9a$u1f600$bE",
            "_ZN6a$XY$bcE",
            "_ZN4a$bcE",
        ] {
            assert!(legacy_path(slow, &mut Vec::new()).is_none(), "{slow}");
        }
    }

    #[test]
    fn paths_equal_when_only_hashes_differ() {
        let a = "_ZN4klog4push17h0123456789abcdefE";
        let b = "_ZN4klog4push17hfedcba9876543210E";
        assert_ne!(a, b);
        assert_eq!(path(a), path(b));
    }
}
