//! The ACPI tables the kernel needs: the MADT ("APIC"), which lists the CPUs (by local APIC id)
//! and the I/O APIC, and says how ISA interrupts map to its inputs.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// What the MADT says.
#[derive(Clone, Debug, Default)]
pub struct Madt {
    /// Local APIC ids of the enabled CPUs, in table order (the bootstrap CPU first in QEMU's).
    pub cpus: Vec<u32>,
    /// The I/O APIC: physical address and first global system interrupt.
    pub ioapic: Option<(u64, u32)>,
    /// ISA interrupt source overrides: (ISA IRQ, global system interrupt).
    pub overrides: Vec<(u8, u32)>,
}

impl Madt {
    /// The global system interrupt of ISA `irq`.
    pub fn isa_gsi(&self, irq: u8) -> u32 {
        self.overrides
            .iter()
            .find(|(i, _)| *i == irq)
            .map_or(u32::from(irq), |(_, g)| *g)
    }
}

fn read<T: Copy>(addr: u64) -> T {
    // SAFETY: ACPI tables lie in RAM below 1 GiB (checked by the callers), which is identity
    // mapped; the values are plain integers, read unaligned.
    unsafe { (addr as *const T).read_unaligned() }
}

const IDENTITY_END: u64 = 1 << 30;

fn checked(addr: u64, len: u64) -> Result<(), String> {
    if addr == 0 || addr.checked_add(len).is_none_or(|e| e > IDENTITY_END) {
        return Err(format!(
            "ACPI table at {addr:#x} ({len} bytes) lies outside the first GiB"
        ));
    }
    Ok(())
}

/// A table's signature and length, after checking its header is readable.
fn header(addr: u64) -> Result<([u8; 4], u32), String> {
    checked(addr, 36)?;
    let signature: [u8; 4] = read(addr);
    let len: u32 = read(addr + 4);
    checked(addr, u64::from(len))?;
    Ok((signature, len))
}

/// Finds the RSDP: where PVH says, or in the BIOS area.
fn rsdp(hint: u64) -> Result<u64, String> {
    if hint != 0 {
        return Ok(hint);
    }
    (0xe0000u64..0x100000)
        .step_by(16)
        .find(|a| read::<[u8; 8]>(*a) == *b"RSD PTR ")
        .ok_or_else(|| "no ACPI RSDP (PVH gave none, and none in 0xe0000..0x100000)".into())
}

/// Reads the MADT, starting from the RSDP at `rsdp_hint` (0: search for it).
pub fn madt(rsdp_hint: u64) -> Result<Madt, String> {
    let rsdp = rsdp(rsdp_hint)?;
    checked(rsdp, 36)?;
    if read::<[u8; 8]>(rsdp) != *b"RSD PTR " {
        return Err(format!("no RSDP signature at {rsdp:#x}"));
    }
    let revision: u8 = read(rsdp + 15);
    let (root, entry_size) = if revision >= 2 && read::<u64>(rsdp + 24) != 0 {
        (read::<u64>(rsdp + 24), 8)
    } else {
        (u64::from(read::<u32>(rsdp + 16)), 4)
    };
    let (_, root_len) = header(root)?;
    let entries = (u64::from(root_len).saturating_sub(36)) / entry_size;
    for i in 0..entries {
        let at = root + 36 + i * entry_size;
        let table = if entry_size == 8 {
            read::<u64>(at)
        } else {
            u64::from(read::<u32>(at))
        };
        let (signature, len) = header(table)?;
        if signature == *b"APIC" {
            return parse_madt(table, u64::from(len));
        }
    }
    Err("the ACPI tables have no MADT".into())
}

fn parse_madt(table: u64, len: u64) -> Result<Madt, String> {
    let mut madt = Madt::default();
    let mut at = table + 44;
    while at + 2 <= table + len {
        let kind: u8 = read(at);
        let entry_len = u64::from(read::<u8>(at + 1));
        if entry_len < 2 || at + entry_len > table + len {
            return Err(format!("MADT entry at {at:#x} has length {entry_len}"));
        }
        match kind {
            0 if entry_len >= 8 => {
                let apic_id: u8 = read(at + 3);
                let flags: u32 = read(at + 4);
                if flags & 1 != 0 {
                    madt.cpus.push(u32::from(apic_id));
                }
            }
            1 if entry_len >= 12 && madt.ioapic.is_none() => {
                let address: u32 = read(at + 4);
                let gsi_base: u32 = read(at + 8);
                madt.ioapic = Some((u64::from(address), gsi_base));
            }
            2 if entry_len >= 10 => {
                let source: u8 = read(at + 3);
                let gsi: u32 = read(at + 4);
                madt.overrides.push((source, gsi));
            }
            _ => {}
        }
        at += entry_len;
    }
    if madt.cpus.is_empty() {
        return Err("the MADT lists no enabled CPU".into());
    }
    Ok(madt)
}
