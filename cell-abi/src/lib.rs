//! The cells' interfaces, checked by the compiler on both sides.
//!
//! A host (`nano_core`, the bare-metal kernel, the tests) calls a cell's function through a
//! loader handle found by the function's path (`memfs::read`). The handle's type cannot be
//! checked at run time: the loader sees symbols, not types. This crate writes each type down
//! once, next to the path:
//!
//! ```rust,ignore
//! pub type Read = fn(&str) -> Result<Vec<u8>, String>;
//! pub const READ: Interface<Read> = /* "memfs::read" */;
//! ```
//!
//! and both sides are held to it:
//!
//! - **the cell** checks its own function against the declaration at compile time, in its
//!   source and in every new version of it (`cells/upgrades`):
//!   `const _: cell_abi::memfs::Read = read;` does not compile unless `read` has exactly that
//!   signature;
//! - **the host** takes the handle by the constant, `system.bind(ns, cell_abi::memfs::READ)`
//!   (`loader::System::bind`), and gets a `Handle<Read>`: the type is never written at the call,
//!   and no `SAFETY` comment has to carry it.
//!
//! Conventions that every cell may follow under its own name (`<cell>::init`, an application's
//! `<app>::main`) are [`Convention`]s: [`INIT`], [`DEINIT`], [`MAIN`], [`TRANSFER_STATE`],
//! [`REVISION`] and [`PLAIN_STATE`]; `INIT.of("memfs")` is the interface `memfs::init`.
//!
//! # What the types promise
//!
//! An [`Interface`] is made only here (its constructor is `unsafe`): each declaration is the
//! promise that every cell exporting that path exports it with that type, which the cell's own
//! compile-time check keeps. A host that binds an interface trusts that the object loaded under
//! the cell's name was built from the cell's source, as it trusts every other byte of it.
//!
//! This crate has no code of its own (constants and generic functions only), so the dependency
//! cell the build makes of it exports nothing.

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

/// A function of a cell: its path and, as the type parameter, its type (a `fn` pointer type).
pub struct Interface<F> {
    path: Cow<'static, str>,
    _type: PhantomData<fn() -> F>,
}

impl<F> Interface<F> {
    /// The interface `path` with type `F`.
    ///
    /// # Safety
    /// Every cell that exports a function at `path` exports it with exactly the type `F` (the
    /// cells keep this with a compile-time check against the declaration).
    pub const unsafe fn new(path: &'static str) -> Interface<F> {
        Interface {
            path: Cow::Borrowed(path),
            _type: PhantomData,
        }
    }

    /// The function's path (`memfs::read`).
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl<F> Clone for Interface<F> {
    fn clone(&self) -> Self {
        Interface {
            path: self.path.clone(),
            _type: PhantomData,
        }
    }
}

impl<F> fmt::Debug for Interface<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interface({})", self.path)
    }
}

/// A function every cell may export under its own name with one type: `<cell>::<name>`.
pub struct Convention<F> {
    name: &'static str,
    _type: PhantomData<fn() -> F>,
}

impl<F> Convention<F> {
    /// The convention `<cell>::name` with type `F`.
    ///
    /// # Safety
    /// Every cell that exports a function named `name` at its top level exports it with exactly
    /// the type `F` (the cells keep this with a compile-time check against the declaration).
    pub const unsafe fn new(name: &'static str) -> Convention<F> {
        Convention {
            name,
            _type: PhantomData,
        }
    }

    /// The function's name in each cell (`init`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The convention's function in the cell `cell`: the interface `<cell>::<name>`.
    pub fn of(&self, cell: &str) -> Interface<F> {
        Interface {
            path: Cow::Owned(format!("{cell}::{}", self.name)),
            _type: PhantomData,
        }
    }
}

/// Declares the interfaces of one cell: for each function, a type alias and a constant.
macro_rules! interfaces {
    ($cell:ident { $( $(#[$doc:meta])* $Type:ident, $CONST:ident = $f:ident: $ty:ty; )* }) => {
        $(
            $(#[$doc])*
            pub type $Type = $ty;

            #[doc = concat!(
                "`", stringify!($cell), "::", stringify!($f), "`, of type [`", stringify!($Type), "`]."
            )]
            pub const $CONST: $crate::Interface<$Type> =
                // SAFETY: the cell checks its `$f` against `$Type` at compile time (`const _:
                // cell_abi::<cell>::<Type> = <f>;` in its source and its new versions').
                unsafe { $crate::Interface::new(concat!(stringify!($cell), "::", stringify!($f))) };
        )*
    };
}

/// Declares a convention: a type alias and a constant.
macro_rules! convention {
    ($(#[$doc:meta])* $Type:ident, $CONST:ident = $name:literal: $ty:ty) => {
        $(#[$doc])*
        pub type $Type = $ty;

        #[doc = concat!("The `", $name, "` convention, of type [`", stringify!($Type), "`].")]
        // SAFETY: every cell that exports the function checks it against `$Type` at compile
        // time (`const _: cell_abi::<Type> = <name>;`).
        pub const $CONST: Convention<$Type> = unsafe { Convention::new($name) };
    };
}

convention! {
    /// `<cell>::init`: called once after the cell is loaded, after the cells it depends on.
    Init, INIT = "init": fn() -> Result<(), String>
}
convention! {
    /// `<app>::deinit`: called just before an application's namespace is torn down, to release
    /// what its statics hold.
    Deinit, DEINIT = "deinit": fn()
}
convention! {
    /// `<app>::main`: an application's entry point.
    Main, MAIN = "main": fn(&[String]) -> i32
}
convention! {
    /// `<cell>::transfer_state`: a new version builds its statics from the old version's, whose
    /// addresses `old` gives by path; it must not change the old state.
    TransferState, TRANSFER_STATE = "transfer_state":
        fn(&dyn Fn(&str) -> Option<usize>) -> Result<(), String>
}
convention! {
    /// `<cell>::revision`: which version of the cell this is, for people.
    Revision, REVISION = "revision": fn() -> String
}
convention! {
    /// `<cell>::plain_state`: exported (never called) by a cell whose statics hold nothing that
    /// points into its own code, read-only or relro data (no trait objects, function pointers or
    /// string literals of its own, however deep). A retired version of such a cell may be freed
    /// while a newer version keeps running on its statics (`nano_core` reclaims it); without the
    /// promise, a retired version whose statics a newer one shares stays mapped.
    PlainState, PLAIN_STATE = "plain_state": fn()
}

/// `klog` (cells/kernel/klog): the kernel log ring buffer.
pub mod klog {
    use super::*;
    interfaces! { klog {
        /// Appends an entry; returns its sequence number.
        Push, PUSH = push: fn(u32, &str, &str) -> u64;
        /// Entries held.
        Len, LEN = len: fn() -> usize;
        /// Whether no entry is held.
        IsEmpty, IS_EMPTY = is_empty: fn() -> bool;
        /// Entries dropped because the ring was full.
        Dropped, DROPPED = dropped: fn() -> u64;
        /// Every entry, formatted, oldest first.
        Dump, DUMP = dump: fn() -> Vec<String>;
        /// Empties the ring.
        Clear, CLEAR = clear: fn();
        /// Entries ever pushed at a level.
        CountAtLevel, COUNT_AT_LEVEL = count_at_level: fn(u32) -> u64;
    }}
}

/// `frame_alloc` (cells/kernel/frame_alloc, and the buddy allocator of cells/upgrades).
pub mod frame_alloc {
    use super::*;
    interfaces! { frame_alloc {
        /// One frame, or `None` when none is free.
        AllocFrame, ALLOC_FRAME = alloc_frame: fn() -> Option<u64>;
        /// `n` contiguous frames.
        AllocContiguous, ALLOC_CONTIGUOUS = alloc_contiguous: fn(usize) -> Option<u64>;
        /// Frees a frame; a double free is an error.
        FreeFrame, FREE_FRAME = free_frame: fn(u64) -> Result<(), String>;
        /// Free frames.
        FreeCount, FREE_COUNT = free_count: fn() -> usize;
        /// All frames.
        TotalFrames, TOTAL_FRAMES = total_frames: fn() -> usize;
        /// The frames allocated, in order.
        AllocatedFrames, ALLOCATED_FRAMES = allocated_frames: fn() -> Vec<u64>;
        /// The free blocks per order (the buddy allocator, version 2, only).
        FreeBlocks, FREE_BLOCKS = free_blocks: fn() -> Vec<usize>;
    }}
}

/// `sched` (cells/kernel/sched, and the priority scheduler of cells/upgrades).
pub mod sched {
    use super::*;
    interfaces! { sched {
        /// Spawns a task with a priority; returns its id.
        Spawn, SPAWN = spawn: fn(&str, u8) -> Result<u64, String>;
        /// Ends a task and frees its stack.
        Exit, EXIT = exit: fn(u64) -> Result<(), String>;
        /// Picks the next task to run.
        Schedule, SCHEDULE = schedule: fn() -> Option<u64>;
        /// The task running now.
        Current, CURRENT = current: fn() -> Option<u64>;
        /// Every task, described.
        Tasks, TASKS = tasks: fn() -> Vec<String>;
        /// The run queue, in order.
        RunQueue, RUN_QUEUE = run_queue: fn() -> Vec<u64>;
        /// Tasks.
        TaskCount, TASK_COUNT = task_count: fn() -> usize;
        /// Changes a task's priority (version 2 only).
        SetPriority, SET_PRIORITY = set_priority: fn(u64, u8) -> Result<(), String>;
        /// Context switches so far (version 2 only).
        ContextSwitches, CONTEXT_SWITCHES = context_switches: fn() -> u64;
    }}
}

/// `memfs` (cells/kernel/memfs, and its new version in cells/upgrades).
pub mod memfs {
    use super::*;
    interfaces! { memfs {
        /// Creates a file (its directories too).
        Create, CREATE = create: fn(&str, &[u8]) -> Result<(), String>;
        /// Writes a file, replacing its contents.
        Write, WRITE = write: fn(&str, &[u8]) -> Result<(), String>;
        /// Reads a whole file.
        Read, READ = read: fn(&str) -> Result<Vec<u8>, String>;
        /// Reads a whole file, panicking when it cannot.
        ReadOrPanic, READ_OR_PANIC = read_or_panic: fn(&str) -> Vec<u8>;
        /// Removes a file.
        Remove, REMOVE = remove: fn(&str) -> Result<(), String>;
        /// Creates a directory.
        Mkdir, MKDIR = mkdir: fn(&str) -> Result<(), String>;
        /// A directory's entries.
        List, LIST = list: fn(&str) -> Result<Vec<String>, String>;
        /// Files in all.
        FileCount, FILE_COUNT = file_count: fn() -> usize;
        /// Frames the files' data takes.
        FramesUsed, FRAMES_USED = frames_used: fn() -> usize;
        /// A file's description (version 2 only).
        Stat, STAT = stat: fn(&str) -> Result<String, String>;
    }}
}

/// `kvstore` (cells/kernel/kvstore, on crates.io crates, and its dependency upgrade).
pub mod kvstore {
    use super::*;
    interfaces! { kvstore {
        /// Stores a value; returns its CRC-32.
        Put, PUT = put: fn(&str, &[u8]) -> Result<u32, String>;
        /// A stored value.
        Get, GET = get: fn(&str) -> Option<Vec<u8>>;
        /// Removes a value (not a pinned one); whether it was there.
        Remove, REMOVE = remove: fn(&str) -> bool;
        /// Values stored.
        Len, LEN = len: fn() -> usize;
        /// A value's CRC-32, checked.
        Checksum, CHECKSUM = checksum: fn(&str) -> Option<u32>;
        /// Sets a value's flags; returns the old ones.
        SetFlags, SET_FLAGS = set_flags: fn(&str, u8) -> Result<u8, String>;
        /// A value's flags.
        Flags, FLAGS = flags: fn(&str) -> Option<u8>;
        /// Tags a value; returns how many the tag has.
        Tag, TAG = tag: fn(&str, &str) -> Result<usize, String>;
        /// The keys with a tag.
        Tagged, TAGGED = tagged: fn(&str) -> Vec<String>;
        /// A path's non-empty parts.
        SplitPath, SPLIT_PATH = split_path: fn(&str) -> Vec<String>;
        /// The CRC-32 of bytes.
        Crc32, CRC32 = crc32: fn(&[u8]) -> u32;
    }}
}

/// `uart` (cells/kernel/uart, the bare-metal kernel's driver cell for COM1's receive path, and
/// its new version in cells/upgrades).
pub mod uart {
    use super::*;
    interfaces! { uart {
        /// Turns the receive interrupt of the UART at an I/O port on.
        Attach, ATTACH = attach: fn(u16) -> Result<(), String>;
        /// The interrupt handler: drains the UART at a port into the ring; returns the bytes it
        /// took.
        OnInterrupt, ON_INTERRUPT = on_interrupt: fn(u16) -> usize;
        /// Takes the bytes received into a buffer, oldest first; returns how many.
        Read, READ = read: fn(&mut [u8]) -> usize;
        /// Whether the handler left bytes in the UART (the ring was full).
        Throttled, THROTTLED = throttled: fn() -> bool;
        /// Bytes in the ring.
        Pending, PENDING = pending: fn() -> usize;
        /// Bytes received so far.
        Received, RECEIVED = received: fn() -> u64;
        /// Bytes dropped so far.
        Dropped, DROPPED = dropped: fn() -> u64;
        /// The counters in one line.
        Stats, STATS = stats: fn() -> String;
        /// Lines received (version 2 only).
        Lines, LINES = lines: fn() -> u64;
        /// Transfers into version 2 so far (version 2 only).
        Generation, GENERATION = generation: fn() -> u64;
    }}
}

/// `counter` (cells/libs/counter, the live-swap fixture, and its new version).
pub mod counter {
    interfaces! { counter {
        /// Counts one event; returns the count.
        Bump, BUMP = bump: fn() -> u64;
        /// The count.
        Count, COUNT = count: fn() -> u64;
        /// The configured mode.
        Mode, MODE = mode: fn() -> u64;
        /// Sets the mode.
        SetMode, SET_MODE = set_mode: fn(u64);
        /// Transfers into version 2 so far (version 2 only).
        Generation, GENERATION = generation: fn() -> u64;
        /// Stays inside the cell until the flag is set; returns the turns it waited (a thread
        /// parked inside the cell, for the tests of a swap's drain).
        Hold, HOLD = hold: fn(&core::sync::atomic::AtomicBool) -> u64;
        /// Calls the function from inside the cell and returns what it returns.
        Call, CALL = call: fn(&dyn Fn() -> u64) -> u64;
    }}
}

/// `greet` (cells/libs/greet, and the version `hola` brings).
pub mod greet {
    use super::*;
    interfaces! { greet {
        /// A greeting for a name.
        Greeting, GREETING = greeting: fn(&str) -> String;
        /// Greetings made.
        Greeted, GREETED = greeted: fn() -> u64;
    }}
}

/// `tls_stats` (cells/libs/tls_stats: `std`, `thread_local!`, `.init_array`).
pub mod tls_stats {
    use super::*;
    interfaces! { tls_stats {
        /// The `argc` its `.init_array` function received (-1: never called).
        InitArrayArgc, INIT_ARRAY_ARGC = init_array_argc: fn() -> i64;
        /// Adds to this thread's and the process's totals; returns this thread's.
        Record, RECORD = record: fn(u64) -> u64;
        /// This thread's total.
        ThreadTotal, THREAD_TOTAL = thread_total: fn() -> u64;
        /// The process's total.
        ProcessTotal, PROCESS_TOTAL = process_total: fn() -> u64;
        /// Keeps a note for this thread; returns how many it has.
        Note, NOTE = note: fn(&str) -> usize;
        /// This thread's notes.
        Notes, NOTES = notes: fn() -> Vec<String>;
        /// A line about this thread.
        Report, REPORT = report: fn(&str) -> String;
        /// This thread's generation (the initial value of the version it first read it under,
        /// plus its advances).
        Generation, GENERATION = generation: fn() -> u64;
        /// Moves this thread's generation on by one; returns the new one.
        Advance, ADVANCE = advance: fn() -> u64;
    }}
}

/// `textkit` (cells/libs/textkit, on `regex`).
pub mod textkit {
    use super::*;
    interfaces! { textkit {
        /// Every match of a pattern.
        FindAll, FIND_ALL = find_all: fn(&str, &str) -> Result<Vec<String>, String>;
        /// Every match replaced.
        ReplaceAll, REPLACE_ALL = replace_all: fn(&str, &str, &str) -> Result<String, String>;
        /// The first match's groups.
        Captures, CAPTURES = captures: fn(&str, &str) -> Result<Vec<Option<String>>, String>;
        /// Words.
        WordCount, WORD_COUNT = word_count: fn(&str) -> usize;
        /// The CRC-32 of each line.
        LineChecksums, LINE_CHECKSUMS = line_checksums: fn(&str) -> Vec<u32>;
    }}
}

/// `columns` (cells/libs/columns, on `unicode-width` 0.1).
pub mod columns {
    use super::*;
    interfaces! { columns {
        /// The text's width in columns.
        Width, WIDTH = width: fn(&str) -> usize;
        /// The text padded to a width.
        Pad, PAD = pad: fn(&str, usize) -> String;
    }}
}

/// `kvquery` (cells/libs/kvquery, compiled against `kvstore`).
pub mod kvquery {
    use super::*;
    interfaces! { kvquery {
        /// The store in one line.
        Summary, SUMMARY = summary: fn() -> String;
        /// The keys with a tag, and their values' lengths.
        TaggedValues, TAGGED_VALUES = tagged_values: fn(&str) -> Vec<(String, usize)>;
    }}
}

/// `hello` (cells/apps/hello).
pub mod hello {
    use super::*;
    interfaces! { hello {
        /// What the last run said.
        Output, OUTPUT = output: fn() -> Vec<String>;
    }}
}

/// `hola` (cells/apps/hola, which brings its own `greet`).
pub mod hola {
    use super::*;
    interfaces! { hola {
        /// What the last run said.
        Output, OUTPUT = output: fn() -> Vec<String>;
    }}
}

/// `banner` (cells/apps/banner, on its own release of `unicode-width`).
pub mod banner {
    use super::*;
    interfaces! { banner {
        /// The widths the last run measured.
        Widths, WIDTHS = widths: fn() -> Vec<(usize, usize)>;
    }}
}

/// `sleeper` (cells/apps/sleeper: an application that runs until told to stop).
pub mod sleeper {
    interfaces! { sleeper {
        /// Lets a run that holds return.
        Release, RELEASE = release: fn();
    }}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn takes_text(_: &str) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }

    #[test]
    fn paths_and_types() {
        assert_eq!(memfs::READ.path(), "memfs::read");
        assert_eq!(klog::COUNT_AT_LEVEL.path(), "klog::count_at_level");
        assert_eq!(uart::ON_INTERRUPT.path(), "uart::on_interrupt");
        assert_eq!(INIT.of("memfs").path(), "memfs::init");
        assert_eq!(MAIN.name(), "main");
        // What a cell writes: a function of another type does not compile here.
        const _: memfs::Read = takes_text;
    }
}
