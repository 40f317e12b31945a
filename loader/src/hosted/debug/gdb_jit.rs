//! The GDB JIT interface ("JIT Compilation Interface" in GDB's manual; LLVM, Wasmtime and V8
//! speak it too): the process exports `__jit_debug_descriptor`, a doubly linked list of code
//! entries each pointing to an in-memory ELF file, and `__jit_debug_register_code`, an empty
//! function a debugger puts a breakpoint on. To add or remove an entry, the process links or
//! unlinks it, names it in `relevant_entry`, sets `action_flag` and calls the function; the
//! debugger, stopped there, reads the descriptor and loads or drops the file's symbols.
//!
//! The descriptor's fields are atomics (the same layout as the C structure's plain fields), and
//! every entry is a `Box` that this module owns, found by its address: a link is followed by
//! looking the address up, so no raw pointer is ever dereferenced here. One lock serializes all
//! changes, as the protocol requires.

use std::boxed::Box;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
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

/// The registered entries by address, with the address of the list's last one; the lock
/// serializes every change to the list. Boxed: the debugger holds their addresses, which must not
/// move. Registering links the new entry after the last, unregistering links its two neighbours
/// to each other: neither walks the list, so their cost does not grow with the number of cells.
struct Entries {
    by_addr: BTreeMap<usize, Box<CodeEntry>>,
    /// The last entry's address (0: the list is empty).
    last: usize,
}

static ENTRIES: Mutex<Entries> = Mutex::new(Entries {
    by_addr: BTreeMap::new(),
    last: 0,
});

fn entries() -> MutexGuard<'static, Entries> {
    ENTRIES.lock().unwrap_or_else(|e| e.into_inner())
}

fn ptr(entry: &CodeEntry) -> *mut CodeEntry {
    (entry as *const CodeEntry).cast_mut()
}

impl Entries {
    /// Sets the `next_entry` of the entry at `at` (the descriptor's head when `at` is 0).
    fn set_next(&self, at: usize, next: *mut CodeEntry) {
        match self.by_addr.get(&at) {
            Some(e) => e.next_entry.store(next, Ordering::Release),
            None => __jit_debug_descriptor
                .first_entry
                .store(next, Ordering::Release),
        }
    }

    /// Sets the `prev_entry` of the entry at `at` (the list's last when `at` is 0).
    fn set_prev(&mut self, at: usize, prev: *mut CodeEntry) {
        match self.by_addr.get(&at) {
            Some(e) => e.prev_entry.store(prev, Ordering::Release),
            None => self.last = prev as usize,
        }
    }
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
    let mut entries = entries();
    let last = entries.last;
    entry
        .prev_entry
        .store(last as *mut CodeEntry, Ordering::Release);
    entries.set_next(last, ptr(&entry));
    entries.last = key.0;
    entries.by_addr.insert(key.0, entry);
    if let Some(e) = entries.by_addr.get(&key.0) {
        notify(e, JIT_REGISTER_FN);
    }
    key
}

/// Unlinks and frees a registration (a debugger drops its symbols first).
pub(crate) fn unregister(registration: Registration) {
    let mut entries = entries();
    let Some(entry) = entries.by_addr.remove(&registration.0) else {
        return;
    };
    let prev = entry.prev_entry.load(Ordering::Acquire);
    let next = entry.next_entry.load(Ordering::Acquire);
    entries.set_next(prev as usize, next);
    entries.set_prev(next as usize, prev);
    // The entry is unlinked but alive while the debugger reads it; it is freed after.
    notify(&entry, JIT_UNREGISTER_FN);
    drop(entry);
}

/// The symbol files registered now, in list order (for tests and inspection): each entry's
/// address and size as a debugger would read them.
pub fn registered() -> Vec<(usize, u64)> {
    let entries = entries();
    let mut out = Vec::with_capacity(entries.by_addr.len());
    let mut at = __jit_debug_descriptor.first_entry.load(Ordering::Acquire) as usize;
    while let Some(e) = entries.by_addr.get(&at) {
        out.push((
            e.symfile_addr.load(Ordering::Acquire) as usize,
            e.symfile_size.load(Ordering::Acquire),
        ));
        at = e.next_entry.load(Ordering::Acquire) as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list as a debugger walks it: each entry's address, from the head, checking every
    /// `prev_entry` on the way.
    fn walk() -> Vec<usize> {
        let entries = entries();
        let mut out = Vec::new();
        let mut prev = 0;
        let mut at = __jit_debug_descriptor.first_entry.load(Ordering::Acquire) as usize;
        while let Some(e) = entries.by_addr.get(&at) {
            assert_eq!(e.prev_entry.load(Ordering::Acquire) as usize, prev);
            out.push(at);
            prev = at;
            at = e.next_entry.load(Ordering::Acquire) as usize;
        }
        assert_eq!(at, 0, "the list ends in null");
        assert_eq!(entries.last, prev, "the last entry is the list's tail");
        assert_eq!(out.len(), entries.by_addr.len(), "every entry is linked");
        out
    }

    #[test]
    fn entries_are_linked_in_order_and_unlinked_on_unregister() {
        let a = register(vec![1, 2, 3]);
        let b = register(vec![4, 5]);
        let c = register(vec![6]);
        let list = walk();
        let at = |r: Registration| list.iter().position(|e| *e == r.0).unwrap();
        assert_eq!((at(b), at(c)), (at(a) + 1, at(a) + 2));
        assert_eq!(&*entries().by_addr[&b.0].symfile, &[4, 5]);
        unregister(b);
        let list = walk();
        assert!(!list.contains(&b.0));
        let at = |r: Registration| list.iter().position(|e| *e == r.0).unwrap();
        assert_eq!(at(c), at(a) + 1, "a links to c");
        assert_eq!(
            __jit_debug_descriptor.action_flag.load(Ordering::Acquire),
            JIT_NOACTION
        );
        unregister(c);
        unregister(a);
        assert!(!walk().contains(&a.0));
    }
}
