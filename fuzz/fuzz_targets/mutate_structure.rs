//! Structure-aware: real cell objects with section headers, symbols and relocations edited at
//! chosen indices (see `loader_fuzz::mutate`), then loaded. Undefined symbols, bad offsets and the
//! like must be refused with an error; no panic, crash or hang.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use loader_fuzz::{load_and_unload, mutate, Tables};

const SEEDS: [&[u8]; 4] = [
    include_bytes!("../seeds/klog.o"),
    include_bytes!("../seeds/frame_alloc.o"),
    include_bytes!("../seeds/counter.o"),
    include_bytes!("../seeds/tls_stats.o"),
];

fn tables() -> &'static [Tables] {
    static TABLES: OnceLock<Vec<Tables>> = OnceLock::new();
    TABLES.get_or_init(|| SEEDS.iter().map(|s| Tables::of(s)).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, ops)) = data.split_first() else {
        return;
    };
    let i = which as usize % SEEDS.len();
    let object = mutate(SEEDS[i], &tables()[i], ops);
    load_and_unload(&object);
});
