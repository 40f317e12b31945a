//! The test binary hosts cells: it exports its symbols as `nano_core`'s binaries do (see
//! `nano_core/build.rs`).
fn main() {
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
    println!("cargo:rerun-if-changed=build.rs");
}
