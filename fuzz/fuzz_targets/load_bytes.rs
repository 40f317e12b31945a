//! Arbitrary bytes as a cell object: the loader must refuse them with an error (or load them and
//! unload them again), never panic, crash or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    loader_fuzz::load_and_unload(data);
});
