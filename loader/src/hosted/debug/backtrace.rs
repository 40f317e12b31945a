//! Backtraces that name cells: the return addresses of the calling thread's stack, walked with
//! libgcc's unwinder (which knows every cell's `.eh_frame`: the loader registered it), each named
//! from the table of published cells ([`super::name_address`]) or, outside the cells, from the
//! base image's `.symtab` or with `dladdr` (shared libraries).
//!
//! ```text
//!    0: crasher::main+0x4f (cell crasher 0.1.0, namespace app:crasher#1)
//!    1: nano_core::apps::call_main+0x2a
//! ```

use core::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use super::CellAddress;
use crate::hosted::unwind::{_Unwind_Backtrace, UnwindContext, URC_NO_REASON};

/// The most frames a backtrace keeps.
const MAX_FRAMES: usize = 256;

/// `_Unwind_Reason_Code`: the end of the stack.
const URC_END_OF_STACK: c_int = 5;

extern "C" {
    /// libgcc: the frame's instruction pointer, and whether it points at the instruction that
    /// faulted (a signal frame) rather than after a call.
    fn _Unwind_GetIPInfo(context: *mut UnwindContext, ip_before_insn: *mut c_int) -> usize;
}

/// One frame of a backtrace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The instruction pointer (a return address, except for the innermost frame and a frame a
    /// signal interrupted).
    pub ip: u64,
    /// What it lies in.
    pub place: Place,
}

/// What a frame's address lies in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A cell's code, named from the registry.
    Cell(CellAddress),
    /// Code of a loaded ELF object (the base image, a shared library): the nearest dynamic
    /// symbol, demangled, and the offset from it.
    Object {
        /// The symbol's path, or the object's file name when no symbol is near.
        name: String,
        /// How far past it the address is.
        offset: u64,
    },
    /// Nothing known.
    Unknown,
}

/// A thread's frames, innermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backtrace {
    /// The frames.
    pub frames: Vec<Frame>,
}

impl Backtrace {
    /// The frames of the calling thread, this function's own left out.
    #[inline(never)]
    pub fn capture() -> Backtrace {
        let mut raw: Vec<(usize, bool)> = Vec::with_capacity(64);
        extern "C" fn each(context: *mut UnwindContext, data: *mut c_void) -> c_int {
            // SAFETY: `data` is the `raw` vector `capture` passed, borrowed for the walk; libgcc
            // calls this on the same thread while `_Unwind_Backtrace` runs.
            let raw = unsafe { &mut *data.cast::<Vec<(usize, bool)>>() };
            let mut before: c_int = 0;
            // SAFETY: `context` is the live frame context libgcc passed to this callback.
            let ip = unsafe { _Unwind_GetIPInfo(context, &mut before) };
            if ip == 0 || raw.len() >= MAX_FRAMES {
                return URC_END_OF_STACK;
            }
            raw.push((ip, before != 0));
            URC_NO_REASON
        }
        // SAFETY: `each` matches the callback type libgcc calls, and `raw` outlives the walk.
        unsafe { _Unwind_Backtrace(each, (&raw mut raw).cast::<c_void>()) };
        let frames = raw
            .into_iter()
            .skip(1) // `capture` itself
            .map(|(ip, exact)| Frame {
                ip: ip as u64,
                // A return address points after its call: name the call.
                place: place_of(if exact { ip } else { ip.saturating_sub(1) }, !exact),
            })
            .collect();
        Backtrace { frames }
    }

    /// The frames of a panic, captured in a panic hook: those of the hook and of the panic
    /// machinery (up to the last frame of `std`'s or `core`'s panicking code) left out.
    pub fn of_panic() -> Backtrace {
        let mut bt = Backtrace::capture();
        let machinery = |f: &Frame| match &f.place {
            Place::Object { name, .. } => {
                name.contains("panicking") || name.contains("rust_begin_unwind")
            }
            _ => false,
        };
        if let Some(last) = bt.frames.iter().take(64).rposition(machinery) {
            bt.frames.drain(..=last);
        }
        bt
    }

    /// Whether a frame lies in a cell.
    pub fn has_cell_frames(&self) -> bool {
        self.frames
            .iter()
            .any(|f| matches!(f.place, Place::Cell(_)))
    }
}

/// What `addr` lies in; `after_call` when it is a return address less one (the printed offset is
/// then that of the return address).
fn place_of(addr: usize, after_call: bool) -> Place {
    let back = u64::from(after_call);
    if let Some(mut cell) = super::name_address(addr as u64) {
        cell.offset += back;
        return Place::Cell(cell);
    }
    if let Some((name, offset)) = super::image::function_at(addr) {
        return Place::Object {
            name: format!("{:#}", rustc_demangle::demangle(name)),
            offset: offset as u64 + back,
        };
    }
    // SAFETY: an all-zero `Dl_info` is valid (null pointers); dladdr only fills it in.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a local `Dl_info`; dladdr reads no memory at `addr`, it only compares it
    // with the loaded objects' ranges and symbols.
    if unsafe { libc::dladdr(addr as *const c_void, &mut info) } == 0 {
        return Place::Unknown;
    }
    let (base, name) = if !info.dli_sname.is_null() {
        // SAFETY: dladdr set `dli_sname` to a NUL-terminated name in the object's string table,
        // which stays mapped while the object is loaded.
        let name = unsafe { CStr::from_ptr(info.dli_sname) }.to_string_lossy();
        (
            info.dli_saddr as usize,
            format!("{:#}", rustc_demangle::demangle(&name)),
        )
    } else if !info.dli_fname.is_null() {
        // SAFETY: as above, for the object's file name.
        let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
        let file = file.rsplit('/').next().unwrap_or_default().to_string();
        (info.dli_fbase as usize, file)
    } else {
        return Place::Unknown;
    };
    Place::Object {
        name,
        offset: addr.saturating_sub(base) as u64 + back,
    }
}

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, frame) in self.frames.iter().enumerate() {
            match &frame.place {
                Place::Cell(cell) => writeln!(f, "{i:>4}: {cell}")?,
                Place::Object { name, offset } => writeln!(f, "{i:>4}: {name}+{offset:#x}")?,
                Place::Unknown => writeln!(f, "{i:>4}: {:#x}", frame.ip)?,
            }
        }
        Ok(())
    }
}
