//! Golden outputs of the text, JSON and DOT views of the real cells (offline snapshot with the
//! manifest), dependency crates included.
//!
//! The expected files live in `build-tools/tests/golden/`. When a cell changes on purpose,
//! regenerate them with
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p build-tools --test golden
//! ```
//!
//! and review the diff. Before comparing, outputs are normalised so that they do not depend on
//! what changes from run to run or with every edit of a cell's source: addresses in JSON
//! (`addr`, `slot`, `base_addr`, `section_addr`: heap addresses of the dry link) become 0,
//! legacy symbol hashes (`17h<16 hex>E`) become `17h…E`, anonymous-data section hashes
//! (`.Lanon.<32 hex>`) become `.Lanon.…`, and SHA-256 digests become `<sha256>`.

mod inspect_support;

use std::path::PathBuf;

use build_tools::inspect::{show, Format, Options, Query};
use inspect_support::model;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Replaces every run of `len` hex digits that follows `prefix` (and, when given, is followed by
/// `suffix`) with `with`.
fn replace_hex(text: &str, prefix: &str, len: usize, suffix: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let hex = after.len() >= len
            && after.as_bytes()[..len].iter().all(u8::is_ascii_hexdigit)
            && after[len..].starts_with(suffix);
        out.push_str(&rest[..at + prefix.len()]);
        if hex {
            out.push_str(with);
            out.push_str(suffix);
            rest = &after[len + suffix.len()..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Replaces every standalone run of exactly 64 hex digits with `<sha256>`.
fn replace_digests(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if run == 64 && boundary {
            out.push_str("<sha256>");
            i += 64;
        } else {
            let step = match run {
                0 => text[i..].chars().next().map_or(1, char::len_utf8),
                n => n,
            };
            out.push_str(&text[i..i + step]);
            i += step;
        }
    }
    out
}

fn zero_addresses(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "addr" | "slot" | "base_addr" | "section_addr")
                    && v.is_u64()
                {
                    *v = 0.into();
                } else {
                    zero_addresses(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(zero_addresses),
        _ => {}
    }
}

fn normalise(text: &str, format: Format) -> String {
    let text = if format == Format::Json {
        let mut v: serde_json::Value = serde_json::from_str(text).expect("the JSON view parses");
        zero_addresses(&mut v);
        serde_json::to_string_pretty(&v).expect("serializable") + "\n"
    } else {
        text.to_string()
    };
    let text = replace_hex(&text, "17h", 16, "E", "…");
    let text = replace_hex(&text, ".Lanon.", 32, "", "…");
    replace_digests(&text)
}

fn check(name: &str, query: Query, format: Format, mut options: Options) {
    options.format = format;
    let output = show(model(), &query, &options).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let actual = normalise(&output, format);
    let ext = match format {
        Format::Text => "txt",
        Format::Json => "json",
        Format::Dot => "dot",
        Format::Html => "html",
    };
    let path = golden_dir().join(format!("{name}.{ext}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).expect("create the golden dir");
        std::fs::write(&path, &actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test -p build-tools --test golden",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended: UPDATE_GOLDEN=1 cargo test -p build-tools --test golden\n\
             --- actual output ---\n{actual}",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

fn kernel() -> Options {
    Options {
        namespace: Some("_kernel".into()),
        ..Options::default()
    }
}

#[test]
fn ls() {
    check("ls", Query::Ls, Format::Text, kernel());
    check("ls", Query::Ls, Format::Json, kernel());
    check("ls-crates", Query::Crates, Format::Text, Options::default());
    check("ls-crates", Query::Crates, Format::Json, Options::default());
}

#[test]
fn tree() {
    for format in [Format::Text, Format::Json, Format::Dot] {
        check("tree", Query::Tree, format, kernel());
    }
    let all = Options {
        all: true,
        depth: Some(1),
        ..kernel()
    };
    check("tree-all-depth1", Query::Tree, Format::Text, all);
}

#[test]
fn invert() {
    for format in [Format::Text, Format::Json, Format::Dot] {
        check(
            "invert-klog",
            Query::Invert("klog".into()),
            format,
            Options::default(),
        );
    }
}

#[test]
fn invert_crate() {
    // byteorder is used only through hash32 and heapless: a bump reaches kvstore three steps up.
    for format in [Format::Text, Format::Json, Format::Dot] {
        check(
            "invert-byteorder",
            Query::Invert("byteorder".into()),
            format,
            Options::default(),
        );
    }
}

#[test]
fn why() {
    let q = || Query::Why("memfs".into(), "frame_alloc".into());
    for format in [Format::Text, Format::Json, Format::Dot] {
        check("why-memfs-frame_alloc", q(), format, Options::default());
    }
}

#[test]
fn symbols() {
    for format in [Format::Text, Format::Json, Format::Dot] {
        check(
            "symbols-frame_alloc",
            Query::Symbols("frame_alloc".into()),
            format,
            Options::default(),
        );
    }
}

#[test]
fn info() {
    check(
        "info-frame_alloc",
        Query::Info("frame_alloc".into()),
        Format::Text,
        Options::default(),
    );
    check(
        "info-frame_alloc",
        Query::Info("frame_alloc".into()),
        Format::Json,
        Options::default(),
    );
    for format in [Format::Text, Format::Json] {
        check(
            "info-heapless",
            Query::Info("heapless".into()),
            format,
            Options::default(),
        );
    }
}

#[test]
fn unresolved_and_cycles() {
    check(
        "unresolved",
        Query::Unresolved,
        Format::Text,
        Options::default(),
    );
    check("cycles", Query::Cycles, Format::Text, Options::default());
}

#[test]
fn normalisation() {
    assert_eq!(
        normalise("_ZN4klog4push17h0123456789abcdefE x", Format::Text),
        "_ZN4klog4push17h…E x"
    );
    assert_eq!(
        normalise(
            ".rodata..Lanon.4063b808b4ee24e6c8c0779966662ed6.2",
            Format::Text
        ),
        ".rodata..Lanon.….2"
    );
    let sha = "04c941ef09db549d65cbcdd06158914744687e0334dcf47f45ebe927fe137898";
    assert_eq!(
        normalise(&format!("sha256 {sha}\n"), Format::Text),
        "sha256 <sha256>\n"
    );
    assert_eq!(
        normalise(r#"{"slot": 123, "offset": 8}"#, Format::Json),
        "{\n  \"offset\": 8,\n  \"slot\": 0\n}\n"
    );
}

#[test]
fn a_cell_a_user_adds_changes_no_golden() {
    // A new library cell with its own new dependency crate, as a user would add them.
    let mut manifest = inspect_support::report().manifest.clone();
    let mut cell = manifest
        .get(crate_metadata::CellKind::Libs, "greet")
        .expect("greet")
        .clone();
    let mut dep = manifest
        .cells
        .iter()
        .find(|e| e.name == "spin")
        .expect("spin")
        .clone();
    let info = dep.crate_info.as_mut().expect("a dependency cell");
    info.key = "spin-99.0.0".into();
    dep.version = "99.0.0".into();
    cell.name = "my_new_cell".into();
    cell.crates = vec![info.key.clone()];
    manifest.cells.extend([cell, dep]);
    let fixture = inspect_support::fixture_manifest(&manifest);
    assert!(fixture.cells.iter().all(|e| e.name != "my_new_cell"));
    assert!(fixture.cells.iter().all(|e| e.version != "99.0.0"));
    // What the goldens show is exactly the fixture's cells: none of the project's own is lost.
    let expected = inspect_support::fixture_manifest(&inspect_support::report().manifest);
    assert_eq!(fixture, expected);
    for (kind, names) in inspect_support::FIXTURE {
        for name in *names {
            assert!(
                expected.get(*kind, name).is_some(),
                "the fixture's {name} ({kind:?}) is not in the build's manifest"
            );
        }
    }
}
