//! The GDB JIT interface ("JIT Compilation Interface" in GDB's manual; LLVM, Wasmtime and V8
//! speak it too): the process exports `__jit_debug_descriptor`, a doubly linked list of code
//! entries each pointing to an in-memory ELF file, and `__jit_debug_register_code`, an empty
//! function a debugger puts a breakpoint on. To add or remove an entry, the process links or
//! unlinks it, names it in `relevant_entry`, sets `action_flag` and calls the function; the
//! debugger, stopped there, reads the descriptor and loads or drops the file's symbols.
//!
//! The descriptor's fields are atomics (the same layout as the C structure's plain fields), and
//! every entry is a `Box` that this module owns in list order, so the list is rebuilt from that
//! order with plain stores: no raw pointer is ever dereferenced here. One lock serializes all
//! changes, as the protocol requires.

use std::boxed::Box;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
#[cfg(test)]
use std::vec;
use std::vec::Vec;

/// `jit_actions_t`.
const JIT_NOACTION: u32 = 0;
const JIT_REGISTER_FN: u32 = 1;
const JIT_UNREGISTER_FN: u32 = 2;

/// `struct jit_code_entry`.
#[repr(C)]
pub(crate) struct CodeEntry {
    next_entry: AtomicPtr<CodeEntry>,
    prev_entry: AtomicPtr<CodeEntry>,
    symfile_addr: AtomicPtr<u8>,
    symfile_size: AtomicU64,
    /// The ELF file the entry points to (not part of the C structure, which ends above).
    symfile: Box<[u8]>,
}

/// `struct jit_descriptor`.
#[repr(C)]
pub struct JitDescriptor {
    version: AtomicU32,
    action_flag: AtomicU32,
    relevant_entry: AtomicPtr<CodeEntry>,
    first_entry: AtomicPtr<CodeEntry>,
}

/// The descriptor a debugger reads (by this exact name).
#[unsafe(no_mangle)]
pub static __jit_debug_descriptor: JitDescriptor = JitDescriptor {
    version: AtomicU32::new(1),
    action_flag: AtomicU32::new(JIT_NOACTION),
    relevant_entry: AtomicPtr::new(std::ptr::null_mut()),
    first_entry: AtomicPtr::new(std::ptr::null_mut()),
};

/// The function a debugger breaks on (by this exact name). The opaque use of the descriptor keeps
/// the compiler from treating it as empty and dropping the calls to it.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn __jit_debug_register_code() {
    std::hint::black_box(&__jit_debug_descriptor);
}

/// The registered entries, in list order; the lock serializes every change to the list. Boxed:
/// the debugger holds their addresses, which must not move when the vector grows.
#[allow(clippy::vec_box)]
static ENTRIES: Mutex<Vec<Box<CodeEntry>>> = Mutex::new(Vec::new());

fn ptr(entry: &CodeEntry) -> *mut CodeEntry {
    (entry as *const CodeEntry).cast_mut()
}

/// Points each entry's links and the descriptor's head at the order of `entries`.
fn relink(entries: &[Box<CodeEntry>]) {
    for (i, e) in entries.iter().enumerate() {
        let prev = i
            .checked_sub(1)
            .map_or(std::ptr::null_mut(), |p| ptr(&entries[p]));
        let next = entries.get(i + 1).map_or(std::ptr::null_mut(), |n| ptr(n));
        e.prev_entry.store(prev, Ordering::Release);
        e.next_entry.store(next, Ordering::Release);
    }
    let first = entries.first().map_or(std::ptr::null_mut(), |e| ptr(e));
    __jit_debug_descriptor
        .first_entry
        .store(first, Ordering::Release);
}

/// Tells an attached debugger about `entry` (`action`), then clears the action.
fn notify(entry: &CodeEntry, action: u32) {
    __jit_debug_descriptor
        .relevant_entry
        .store(ptr(entry), Ordering::Release);
    __jit_debug_descriptor
        .action_flag
        .store(action, Ordering::Release);
    __jit_debug_register_code();
    __jit_debug_descriptor
        .action_flag
        .store(JIT_NOACTION, Ordering::Release);
    __jit_debug_descriptor
        .relevant_entry
        .store(std::ptr::null_mut(), Ordering::Release);
}

/// A registration: the key [`unregister`] takes (the entry's address, which stays fixed while it
/// is registered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Registration(usize);

/// Registers the ELF file `symfile` with an attached (or later attaching) debugger.
pub(crate) fn register(symfile: Vec<u8>) -> Registration {
    let mut symfile = symfile.into_boxed_slice();
    let entry = Box::new(CodeEntry {
        next_entry: AtomicPtr::new(std::ptr::null_mut()),
        prev_entry: AtomicPtr::new(std::ptr::null_mut()),
        symfile_addr: AtomicPtr::new(symfile.as_mut_ptr()),
        symfile_size: AtomicU64::new(symfile.len() as u64),
        symfile,
    });
    let key = Registration(ptr(&entry) as usize);
    let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    entries.push(entry);
    relink(&entries);
    if let Some(e) = entries.last() {
        notify(e, JIT_REGISTER_FN);
    }
    key
}

/// Unlinks and frees a registration (a debugger drops its symbols first).
pub(crate) fn unregister(registration: Registration) {
    let mut entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(i) = entries
        .iter()
        .position(|e| ptr(e) as usize == registration.0)
    else {
        return;
    };
    let entry = entries.remove(i);
    relink(&entries);
    // The entry is unlinked but alive while the debugger reads it; it is freed after.
    notify(&entry, JIT_UNREGISTER_FN);
    drop(entry);
}

/// The symbol files registered now, in list order (for tests and inspection): each entry's
/// address and size as a debugger would read them.
pub fn registered() -> Vec<(usize, u64)> {
    let entries = ENTRIES.lock().unwrap_or_else(|e| e.into_inner());
    entries
        .iter()
        .map(|e| {
            (
                e.symfile_addr.load(Ordering::Acquire) as usize,
                e.symfile_size.load(Ordering::Acquire),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_linked_in_order_and_unlinked_on_unregister() {
        let a = register(vec![1, 2, 3]);
        let b = register(vec![4, 5]);
        {
            let entries = ENTRIES.lock().unwrap();
            let ia = entries.iter().position(|e| ptr(e) as usize == a.0).unwrap();
            let ib = entries.iter().position(|e| ptr(e) as usize == b.0).unwrap();
            assert_eq!(ib, ia + 1);
            assert_eq!(
                entries[ia].next_entry.load(Ordering::Acquire) as usize,
                b.0,
                "a links to b"
            );
            assert_eq!(entries[ib].prev_entry.load(Ordering::Acquire) as usize, a.0);
            assert_eq!(&*entries[ib].symfile, &[4, 5]);
        }
        unregister(a);
        let entries = ENTRIES.lock().unwrap();
        assert!(entries.iter().all(|e| ptr(e) as usize != a.0));
        let ib = entries.iter().position(|e| ptr(e) as usize == b.0).unwrap();
        let prev = entries[ib].prev_entry.load(Ordering::Acquire);
        assert!(prev.is_null() || entries.iter().any(|e| ptr(e) == prev));
        assert_eq!(
            __jit_debug_descriptor.action_flag.load(Ordering::Acquire),
            JIT_NOACTION
        );
        drop(entries);
        unregister(b);
    }
}
