//! Unwind tables: real cells with bytes of `.eh_frame` and its relocations edited (see
//! `loader_fuzz::unwind::mutate_unwind`), then loaded on a platform that registers the table with
//! libgcc; after a load that succeeded, every FDE is looked up the way the unwinder does
//! (`_Unwind_Find_FDE`). A broken table must be refused with an error, never registered: no
//! panic, crash or hang, and libgcc must find the FDEs where the loader's check says they are.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use loader_fuzz::unwind::{look_up_every_fde, mutate_unwind, UnwindTables};
use loader_fuzz::{load_then, seed, SEEDS};

fn tables() -> &'static [UnwindTables] {
    static TABLES: OnceLock<Vec<UnwindTables>> = OnceLock::new();
    TABLES.get_or_init(|| SEEDS.iter().map(|s| UnwindTables::of(s)).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, ops)) = data.split_first() else {
        return;
    };
    let (i, seed) = seed(which);
    let object = mutate_unwind(seed, &tables()[i], ops);
    load_then(&object, &mut look_up_every_fde);
});
