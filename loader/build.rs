//! Exports the symbols of the loader's own test binaries, as the base image exports its own
//! (DESIGN §3), so the hosted backend's tests read a `.dynsym` like the one it will see in
//! `nano_core`.

fn main() {
    // `rustc-link-arg-tests` would reach only `tests/*.rs` targets (and is an error while there is
    // none); `rustc-link-arg` also reaches the library's unit-test binary. A library is not linked,
    // so nothing else is affected.
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic");
}
