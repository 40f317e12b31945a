//! Structure-aware: real cell objects with section headers, symbols and relocations edited at
//! chosen indices (see `loader_fuzz::mutate`), then loaded. Undefined symbols, bad offsets and the
//! like must be refused with an error; no panic, crash or hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use loader_fuzz::{load_and_unload, mutate, seed, Tables, SEEDS};

fn tables() -> &'static [Tables] {
    static TABLES: OnceLock<Vec<Tables>> = OnceLock::new();
    TABLES.get_or_init(|| SEEDS.iter().map(|s| Tables::of(s)).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, ops)) = data.split_first() else {
        return;
    };
    let (i, seed) = seed(which);
    let object = mutate(seed, &tables()[i], ops);
    load_and_unload(&object);
});
