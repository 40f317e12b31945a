//! Unwind registration with libgcc (`libgcc_s`, which std links for its own unwinding).
//!
//! `__register_frame` takes the start of a whole `.eh_frame` section that ends with a 4-byte zero
//! terminator and walks it lazily, on the first unwind that needs it. `__deregister_frame` aborts
//! the process when it is given a pointer that was never registered, hence the contract of
//! [`Unwinder::deregister`].
//!
//! The same tables tell which functions the calling thread is in: [`find_return_address`] walks
//! its frames with `_Unwind_Backtrace`, exactly, where a scan of the stack's words would also see
//! stale return addresses left in the unused parts of live frames.

use core::ffi::c_void;

use super::Hosted;
use crate::platform::{PlatformError, Unwinder};

/// libgcc's `struct _Unwind_Context`, seen only through pointers.
#[repr(C)]
pub(crate) struct UnwindContext {
    _opaque: [u8; 0],
}

/// `_URC_NO_REASON`: a backtrace callback's "go on to the next frame".
pub(crate) const URC_NO_REASON: i32 = 0;
/// `_URC_NORMAL_STOP`: a backtrace callback's "stop here".
const URC_NORMAL_STOP: i32 = 4;

/// A `_Unwind_Backtrace` callback.
pub(crate) type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> i32;

/// libgcc's `struct dwarf_eh_bases`: what `_Unwind_Find_FDE` reports besides the FDE.
#[repr(C)]
struct DwarfEhBases {
    tbase: *mut c_void,
    dbase: *mut c_void,
    func: *mut c_void,
}

extern "C" {
    /// libgcc: registers a zero-terminated `.eh_frame` section.
    fn __register_frame(begin: *const u8);
    /// libgcc: forgets what `__register_frame(begin)` registered.
    fn __deregister_frame(begin: *const u8);
    /// libgcc: calls `trace` for each frame of the calling thread, innermost first, until it
    /// returns something other than `_URC_NO_REASON` or the frames end.
    pub(crate) fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> i32;
    /// libgcc: the instruction pointer of a frame (for a caller's frame, its return address).
    fn _Unwind_GetIP(context: *mut UnwindContext) -> usize;
    /// libgcc: the FDE that covers `pc`, among the registered tables and the loaded objects'.
    fn _Unwind_Find_FDE(pc: *mut c_void, bases: *mut DwarfEhBases) -> *const c_void;
}

/// The first return address among the calling thread's frames (innermost first, as the unwinder
/// finds them from the registered tables) for which `hit` is true. The walk ends at the outermost
/// frame or at one without unwind information.
pub(crate) fn find_return_address(hit: &mut dyn FnMut(u64) -> bool) -> Option<u64> {
    struct Walk<'a> {
        hit: &'a mut dyn FnMut(u64) -> bool,
        found: Option<u64>,
    }
    extern "C" fn step(context: *mut UnwindContext, arg: *mut c_void) -> i32 {
        // SAFETY: `arg` is the `Walk` below, which outlives the walk and which only this thread
        // (the one walking) touches while it runs.
        let walk = unsafe { &mut *arg.cast::<Walk<'_>>() };
        // SAFETY: `context` is the live context libgcc hands to this callback.
        let ip = unsafe { _Unwind_GetIP(context) } as u64;
        if ip != 0 && (walk.hit)(ip) {
            walk.found = Some(ip);
            return URC_NORMAL_STOP;
        }
        URC_NO_REASON
    }
    let mut walk = Walk { hit, found: None };
    // SAFETY: `step` matches libgcc's callback type and does not unwind; `arg` points at `walk`,
    // alive until `_Unwind_Backtrace` returns. The walk reads only registered tables, which stay
    // mapped while their cells are (the caller keeps the cells asked about mapped).
    unsafe { _Unwind_Backtrace(step, (&mut walk as *mut Walk<'_>).cast()) };
    walk.found
}

/// The FDE libgcc's unwinder finds for `pc`, as it searches when it unwinds a frame there (the
/// first search after a registration walks and sorts the whole new table), and the start of the
/// function that FDE gives; `None` when no FDE covers `pc`. For tests of the tables the loader
/// registers.
pub fn find_fde(pc: u64) -> Option<FoundFde> {
    let mut bases = DwarfEhBases {
        tbase: core::ptr::null_mut(),
        dbase: core::ptr::null_mut(),
        func: core::ptr::null_mut(),
    };
    // SAFETY: `bases` is a valid out-parameter, and `pc` is only compared. libgcc walks every
    // registered table: the loader registers only tables its check (`eh_frame.rs`) passed.
    let fde = unsafe { _Unwind_Find_FDE(pc as usize as *mut c_void, &mut bases) };
    (!fde.is_null()).then_some(FoundFde {
        fde: fde as usize as u64,
        function: bases.func as usize as u64,
    })
}

/// What [`find_fde`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundFde {
    /// The FDE's address.
    pub fde: u64,
    /// The start of the function it describes (its `pc_begin`).
    pub function: u64,
}

impl Unwinder for Hosted {
    unsafe fn register(&self, eh_frame: *const u8) -> Result<(), PlatformError> {
        if eh_frame.is_null() {
            return Err(PlatformError::Unwind);
        }
        // SAFETY: the caller guarantees a complete, relocated, zero-terminated `.eh_frame` that
        // stays mapped and unchanged until it is deregistered, which is what libgcc requires.
        unsafe { __register_frame(eh_frame) };
        Ok(())
    }

    unsafe fn deregister(&self, eh_frame: *const u8) {
        if eh_frame.is_null() {
            return;
        }
        // SAFETY: the caller guarantees `eh_frame` was registered (so libgcc finds it and does not
        // abort) and that no frame it describes is on any stack.
        unsafe { __deregister_frame(eh_frame) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{Memory, Protection};
    use std::vec;
    use std::vec::Vec;

    /// Machine code of a function that calls `target`: `mov rax, target; sub rsp, 8; call rax;
    /// add rsp, 8; ret` (21 bytes).
    fn trampoline(target: usize) -> Vec<u8> {
        let mut code = vec![0x48, 0xb8];
        code.extend_from_slice(&target.to_le_bytes());
        code.extend_from_slice(&[
            0x48, 0x83, 0xec, 0x08, 0xff, 0xd0, 0x48, 0x83, 0xc4, 0x08, 0xc3,
        ]);
        code
    }

    /// A zero-terminated `.eh_frame` (one CIE, one FDE) for [`trampoline`] code at `code`, for an
    /// `.eh_frame` placed at `at`.
    fn eh_frame(code: usize, code_len: usize, at: usize) -> Vec<u8> {
        let mut cie = vec![0, 0, 0, 0, 1, b'z', b'R', 0, 1, 0x78, 16, 1, 0x1b];
        // DW_CFA_def_cfa rsp+8; DW_CFA_offset rip at cfa-8; nops up to a multiple of 4.
        cie.extend_from_slice(&[0x0c, 7, 8, 0x90, 1, 0, 0]);
        let mut out = Vec::new();
        out.extend_from_slice(&(cie.len() as u32).to_le_bytes());
        out.extend_from_slice(&cie);

        let fde_start = out.len();
        let pc_begin_at = at + fde_start + 8;
        let mut fde = Vec::new();
        fde.extend_from_slice(&((fde_start + 4) as u32).to_le_bytes()); // back to the CIE
        fde.extend_from_slice(&((code.wrapping_sub(pc_begin_at)) as u32).to_le_bytes());
        fde.extend_from_slice(&(code_len as u32).to_le_bytes());
        // No augmentation data; after `sub rsp, 8` (offset 14) the CFA is rsp+16, after
        // `add rsp, 8` (offset 20) rsp+8 again.
        fde.extend_from_slice(&[0, 0x40 | 14, 0x0e, 16, 0x40 | 6, 0x0e, 8, 0]);
        out.extend_from_slice(&(fde.len() as u32).to_le_bytes());
        out.extend_from_slice(&fde);
        out.extend_from_slice(&[0; 4]);
        out
    }

    extern "C-unwind" fn panics() {
        std::panic::panic_any(0x5eed_u32);
    }

    /// Without registration a panic through generated code aborts the process; with it, the
    /// panic unwinds through the generated frame and is caught.
    #[test]
    fn panics_unwind_through_registered_generated_code() {
        let hosted = Hosted::new().unwrap();
        let page = hosted.page_size();
        let base = hosted.map(2 * page).unwrap();
        let frame_at = base.wrapping_add(page);
        let code = trampoline(panics as *const () as usize);
        let frame = eh_frame(base as usize, code.len(), frame_at as usize);
        // SAFETY: both copies stay inside the fresh two-page read-write mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), base, code.len());
            std::ptr::copy_nonoverlapping(frame.as_ptr(), frame_at, frame.len());
        }
        hosted.protect(base, page, Protection::ReadExecute).unwrap();
        hosted
            .protect(frame_at, page, Protection::ReadOnly)
            .unwrap();
        // SAFETY: the first page holds the trampoline, a function without arguments that calls
        // `panics` with an aligned stack.
        let generated: extern "C-unwind" fn() = unsafe { std::mem::transmute(base) };

        for _ in 0..2 {
            // SAFETY: `frame_at` holds a complete, zero-terminated `.eh_frame` that stays mapped.
            unsafe { hosted.register(frame_at) }.unwrap();
            let caught = std::panic::catch_unwind(|| generated()).unwrap_err();
            assert_eq!(caught.downcast_ref::<u32>(), Some(&0x5eed));
            // SAFETY: registered above; the generated frame is off the stack.
            unsafe { hosted.deregister(frame_at) };
        }
        // SAFETY: exactly the mapping made above; nothing refers to it any more.
        unsafe { hosted.unmap(base, 2 * page) };
    }

    /// Why `eh_frame.rs` refuses an empty FDE at another's start (`EmptyFdeInside`), on libgcc
    /// itself: with the check bypassed, libgcc finds no FDE for the first address of a function
    /// once a table also has an FDE with an empty range there. It sorts both under the same key
    /// (table order, equal keys stay put) and its binary search steps right past the empty one,
    /// losing every address of the function.
    #[test]
    fn libgcc_misses_a_function_whose_start_an_empty_fde_shares() {
        use crate::eh_frame::{check, Bounds};
        use crate::malformation::EhFrameFault;
        use crate::testing::unwind::{rustc_cie, Table};

        let hosted = Hosted::new().unwrap();
        let page = hosted.page_size();
        let base = hosted.map(2 * page).unwrap();
        // The first page stands for the function's text (never run); the table is in the second.
        let (code, frame_at) = (base as u64, base.wrapping_add(page));
        let table = |empty: bool| {
            let mut t = Table::at(frame_at as u64);
            let cie = t.cie(&rustc_cie());
            let function = t.fde(cie, code, 0x40);
            if empty {
                t.fde(cie, code, 0);
            }
            (t.terminated(), function)
        };
        for empty in [false, true] {
            let (frame, function) = table(empty);
            // SAFETY: the copy stays inside the fresh mapping's second page (a few dozen bytes).
            unsafe { std::ptr::copy_nonoverlapping(frame.as_ptr(), frame_at, frame.len()) };
            // SAFETY: `frame_at` holds a complete, zero-terminated table that stays mapped and
            // unchanged until it is deregistered below.
            unsafe { hosted.register(frame_at) }.unwrap();
            let found = find_fde(code);
            let middle = find_fde(code + 0x20);
            // SAFETY: registered above; nothing runs the "function".
            unsafe { hosted.deregister(frame_at) };
            let fde = frame_at as u64 + function as u64;
            let text = [(code, code + page as u64)];
            let bounds = Bounds {
                text: &text,
                mapping: (code, code + 2 * page as u64),
            };
            let checked = check(&frame, frame.len() - 4, frame_at as u64, &bounds);
            if empty {
                // Every address at or after the empty FDE's start is lost, not just that one.
                assert_eq!((found, middle), (None, None), "libgcc found the function");
                let fault = EhFrameFault::EmptyFdeInside {
                    other: function as u64,
                };
                assert_eq!(checked.map_err(|e| e.fault), Err(fault));
            } else {
                let function = code;
                assert_eq!(found, Some(FoundFde { fde, function }));
                assert_eq!(middle, found);
                assert!(checked.is_ok());
            }
        }
        // SAFETY: exactly the mapping made above; nothing refers to it any more.
        unsafe { hosted.unmap(base, 2 * page) };
    }

    #[test]
    fn null_is_refused() {
        let hosted = Hosted::new().unwrap();
        // SAFETY: a null pointer is rejected before libgcc sees it.
        let result = unsafe { hosted.register(std::ptr::null()) };
        assert_eq!(result, Err(PlatformError::Unwind));
    }
}
