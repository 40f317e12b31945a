//! Differential test: the same functions, linked statically into this test binary by rustc and
//! the system linker, and loaded as cells (with every dependency cell: regex and its crates,
//! crc32fast, smallvec, unicode-width, ...) by our loader, give identical results on the same
//! inputs.
//!
//! This binary links the crates too, so by the usual rule the cells would bind to its copies; the
//! boot asks for every dependency cell to be loaded anyway (`load_provided_dependencies`), so the
//! calls through handles run the loader's relocated copies of the third-party code.

use std::path::{Path, PathBuf};

use build_tools::build::{build_cells, BuildOptions};
use nano_core::{BootOptions, Kernel};

/// `target/cells`, built as `cargo cell build` builds it (nothing to do when it is up to date).
fn cells_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("differential sits in the workspace");
    build_cells(&BuildOptions {
        workspace_root: Some(root.to_path_buf()),
        target_dir: None,
        quiet: true,
    })
    .unwrap_or_else(|e| panic!("building the cells failed: {e:#}"))
    .cells_dir
}

/// A small deterministic generator (xorshift), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, len: usize) -> String {
        const PIECES: &[&str] = &[
            "a",
            "b",
            "foo",
            "bar",
            "Hello",
            "x1",
            "42",
            "7",
            " ",
            " ",
            "\n",
            "\t",
            "@",
            ".com",
            "é",
            "漢字",
            "👩‍🔬",
            "\r\n",
            "_",
            "-",
            "ﾞ",
            "user",
            "mail",
        ];
        (0..len)
            .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
            .collect()
    }
}

const PATTERNS: &[&str] = &[
    r"\d+",
    r"[a-z]+",
    r"(\w+)@(\w+)\.com",
    r"(?i)hello",
    r"\bfoo\b",
    r"\s+",
    r"(?m)^\w",
    r"\p{Han}+",
    r"[^\x00-\x7f]",
    r"(a|b)+",
    r"(",
];

#[test]
fn the_cells_compute_what_the_statically_linked_crates_compute() {
    let mut kernel = Kernel::boot_with(
        &cells_dir(),
        &BootOptions {
            load_provided_dependencies: true,
            ..BootOptions::default()
        },
    )
    .expect("boot");
    for cell in [
        "regex",
        "regex_automata",
        "regex_syntax",
        "crc32fast",
        "unicode_width",
    ] {
        assert!(kernel.cell_id(cell).is_some(), "{cell} is loaded as a cell");
    }
    use cell_abi::{columns as abi_columns, kvstore as abi_kvstore, textkit as abi_textkit};
    let h = (
        kernel.bind(abi_textkit::FIND_ALL).unwrap(),
        kernel.bind(abi_textkit::REPLACE_ALL).unwrap(),
        kernel.bind(abi_textkit::CAPTURES).unwrap(),
        kernel.bind(abi_textkit::WORD_COUNT).unwrap(),
        kernel.bind(abi_textkit::LINE_CHECKSUMS).unwrap(),
        kernel.bind(abi_kvstore::CRC32).unwrap(),
        kernel.bind(abi_kvstore::SPLIT_PATH).unwrap(),
        kernel.bind(abi_columns::WIDTH).unwrap(),
        kernel.bind(abi_columns::PAD).unwrap(),
    );
    // The same functions linked statically, with the types cell-abi declares for the handles.
    let statics: (
        abi_textkit::FindAll,
        abi_textkit::ReplaceAll,
        abi_textkit::Captures,
        abi_textkit::WordCount,
        abi_textkit::LineChecksums,
        abi_kvstore::Crc32,
        abi_kvstore::SplitPath,
        abi_columns::Width,
        abi_columns::Pad,
    ) = (
        textkit::find_all,
        textkit::replace_all,
        textkit::captures,
        textkit::word_count,
        textkit::line_checksums,
        kvstore::crc32,
        kvstore::split_path,
        columns::width,
        columns::pad,
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for round in 0..60 {
        let text = rng.text(round % 17 + 1);
        for pattern in PATTERNS {
            assert_eq!(
                (h.0.get())(pattern, &text),
                (statics.0)(pattern, &text),
                "{pattern} {text:?}"
            );
            assert_eq!(
                (h.1.get())(pattern, &text, "<$1>"),
                (statics.1)(pattern, &text, "<$1>"),
                "{pattern} {text:?}"
            );
            assert_eq!(
                (h.2.get())(pattern, &text),
                (statics.2)(pattern, &text),
                "{pattern} {text:?}"
            );
            compared += 3;
        }
        assert_eq!((h.3.get())(&text), (statics.3)(&text), "{text:?}");
        assert_eq!((h.4.get())(&text), (statics.4)(&text), "{text:?}");
        assert_eq!(
            (h.5.get())(text.as_bytes()),
            (statics.5)(text.as_bytes()),
            "{text:?}"
        );
        let path = text.replace(' ', "/");
        assert_eq!((h.6.get())(&path), (statics.6)(&path), "{path:?}");
        assert_eq!((h.7.get())(&text), (statics.7)(&text), "{text:?}");
        assert_eq!((h.8.get())(&text, 40), (statics.8)(&text, 40), "{text:?}");
        compared += 6;
    }
    // The inputs reached the interesting paths: matches, captures, a refused pattern.
    assert_eq!(
        (statics.0)(r"(\w+)@(\w+)\.com", "user@mail.com"),
        Ok(vec!["user@mail.com".to_owned()])
    );
    assert!((statics.0)("(", "x").is_err());
    assert!(compared > 2000);
}
