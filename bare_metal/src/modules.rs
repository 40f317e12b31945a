//! The boot module: one `ar` archive (written by `cargo cell qemu`) holding the kernel's own ELF
//! file, a `manifest.json` with the kernel cells, their new versions and the dependency cells
//! they need, and every object named in it, under the manifest's paths (`kernel/klog.o`,
//! `upgrades/memfs.o`, `deps/log-0.4.35.o`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use goblin::archive::Archive;

/// The member that holds the kernel's ELF file.
pub const KERNEL_ELF: &str = "nano_core_bare";
/// The member that holds the manifest.
pub const MANIFEST: &str = "manifest.json";

/// The archive's members, borrowed from the module's memory.
pub struct Modules {
    members: Vec<(String, &'static [u8])>,
}

impl Modules {
    /// Reads the archive in `bytes`.
    pub fn read(bytes: &'static [u8]) -> Result<Modules, String> {
        let archive = Archive::parse(bytes)
            .map_err(|e| format!("the boot module is not an ar archive: {e}"))?;
        let mut members = Vec::new();
        for name in archive.members() {
            let data = archive
                .extract(name, bytes)
                .map_err(|e| format!("boot module member `{name}`: {e}"))?;
            members.push((String::from(name), data));
        }
        Ok(Modules { members })
    }

    /// The member `name`.
    pub fn get(&self, name: &str) -> Result<&'static [u8], String> {
        self.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| format!("the boot module has no `{name}`"))
    }

    /// Every member: name and size.
    pub fn list(&self) -> impl Iterator<Item = (&str, usize)> + '_ {
        self.members.iter().map(|(n, d)| (n.as_str(), d.len()))
    }
}
