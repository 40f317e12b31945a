//! Link arguments for the freestanding kernel: no C runtime, a static non-PIE executable laid out
//! by `link.ld`, plus the list of symbols the cells need from the image (`NANO_BARE_KEEP`, written
//! by `cargo cell qemu`) so that `--gc-sections` keeps them.

use std::env;

fn main() {
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for arg in [
        "-nostartfiles".to_string(),
        "-nostdlib".to_string(),
        "-static".to_string(),
        format!("-Wl,-T,{dir}/link.ld"),
        // A hash of the whole output in a note: the kernel checks the boot module's copy of
        // its ELF file against it (src/build_id.rs).
        "-Wl,--build-id=sha1".to_string(),
        "-Wl,-z,max-page-size=4096".to_string(),
        "-Wl,-z,noexecstack".to_string(),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-env-changed=NANO_BARE_KEEP");
    if let Ok(keep) = env::var("NANO_BARE_KEEP") {
        if !keep.is_empty() {
            println!("cargo:rustc-link-arg-bins={keep}");
            println!("cargo:rerun-if-changed={keep}");
        }
    }
}
