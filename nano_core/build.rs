//! The base image exports its symbols (`core`, `alloc`, `std`, `log`, the allocator shim) in
//! `.dynsym`, so that cells can bind to them even when the binary is stripped (DESIGN §3). The
//! test binaries host cells too, so they get the same flag.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
    println!("cargo:rustc-link-arg-tests=-Wl,--export-dynamic");
    // The benchmarks host cells too, and `dlopen` shared libraries that bind to the allocator
    // shim the executable defines.
    println!("cargo:rustc-link-arg-benches=-Wl,--export-dynamic");
    println!("cargo:rerun-if-changed=build.rs");
}
