//! The loader's errors. Each names what is wrong: the cell, and the symbol (demangled) or the
//! section. Whatever failed, the system is exactly as it was before the call.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use crate::malformation::{Malformation, Truncation};
use crate::platform::PlatformError;
use crate_metadata::{demangle, Sha256};
use namespace::NamespaceError;

/// Why symbols that a cell needs are missing, when the loader can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingCause {
    /// The crates that define them are known (a dependency cell the build made, say) but not
    /// loaded where the cell can see them: each missing symbol's
    /// [`defined_by`](MissingSymbol::defined_by) names its crate.
    NotLoaded,
    /// Functions of the toolchain's own crates (`core`, `alloc`, `std`: v0-mangled symbols) exist
    /// in the base image under other hashes: the cell was built by another rustc.
    Toolchain,
    /// Another crate's symbols exist in the base image under other hashes: the crate's identity
    /// (version, features, profile) differs between the cell's build and the base image's.
    CrateIdentity,
}

/// A symbol that could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingSymbol {
    /// The mangled name.
    pub mangled: String,
    /// The name as people read it.
    pub demangled: String,
    /// A symbol of the base image with the same path and another hash, when there is one.
    pub other_hash: Option<String>,
    /// A namespace that defines it but that the cell's namespace cannot see (a sibling or a
    /// child: an application's cells are invisible to the kernel and to other applications).
    pub hidden_in: Option<String>,
    /// The cell that exports it (`regex 1.13.2`) when the system's [catalog](crate::Catalog)
    /// knows one that is not loaded where the cell can see it.
    pub defined_by: Option<String>,
}

/// Everything that can go wrong while loading a cell or creating a handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The object file is empty.
    Empty {
        /// The cell.
        cell: String,
    },
    /// The bytes are not an ELF file.
    NotElf {
        /// The cell.
        cell: String,
    },
    /// The file ends before a header, table or section it declares.
    Truncated {
        /// The cell.
        cell: String,
        /// What is cut off.
        what: Truncation,
    },
    /// A 32-bit ELF object.
    WrongClass {
        /// The cell.
        cell: String,
    },
    /// A big-endian ELF object.
    WrongEndian {
        /// The cell.
        cell: String,
    },
    /// An object for another machine than x86_64.
    WrongMachine {
        /// The cell.
        cell: String,
        /// Its `e_machine`.
        machine: u16,
    },
    /// Not a relocatable object (`ET_EXEC`, `ET_DYN`, ...).
    NotRelocatable {
        /// The cell.
        cell: String,
        /// Its `e_type`, named.
        e_type: &'static str,
    },
    /// The ELF structure is inconsistent, or asks for something the loader refuses.
    Malformed {
        /// The cell.
        cell: String,
        /// What is wrong.
        what: Malformation,
    },
    /// A relocation of a type the loader does not serve.
    UnknownRelocation {
        /// The cell.
        cell: String,
        /// The section the relocation applies to.
        section: String,
        /// Its `r_offset`.
        offset: u64,
        /// Its `r_type`.
        r_type: u32,
    },
    /// A relocation whose value does not fit its field, or whose field lies outside its section.
    RelocationOverflow {
        /// The cell.
        cell: String,
        /// The section the relocation applies to.
        section: String,
        /// Its `r_offset`.
        offset: u64,
        /// The relocation type's name.
        r_type: &'static str,
        /// The target symbol, demangled.
        symbol: String,
        /// The value that did not fit.
        value: i128,
    },
    /// Symbols that no cell, namespace, base image or platform defines.
    UndefinedSymbols {
        /// The cell.
        cell: String,
        /// The namespace searched first.
        namespace: String,
        /// Every missing symbol.
        missing: Vec<MissingSymbol>,
        /// Why they are missing, when the loader can tell.
        cause: Option<MissingCause>,
    },
    /// The object's SHA-256 is not the one the manifest records: it was changed after the build,
    /// or is not the object the manifest describes. Nothing was mapped.
    IntegrityMismatch {
        /// The cell.
        cell: String,
        /// The manifest's hash.
        expected: Sha256,
        /// The object's hash.
        actual: Sha256,
    },
    /// A cell of this name is loaded in the namespace already.
    AlreadyLoaded {
        /// The cell.
        cell: String,
        /// The namespace.
        namespace: String,
    },
    /// The namespace refused the cell (a duplicate symbol, an unknown namespace).
    Namespace {
        /// The cell.
        cell: String,
        /// What the namespace said.
        error: NamespaceError,
    },
    /// The platform failed (memory, protection, unwind registration, TLS).
    Platform {
        /// The cell.
        cell: String,
        /// What failed.
        error: PlatformError,
    },
    /// A thread-local reference that cannot be served: to a symbol that is not thread-local (or a
    /// plain reference to one that is), a local-dynamic offset against another cell's variable, or
    /// another cell's variable on a platform without thread-locals.
    UnsupportedTls {
        /// The cell.
        cell: String,
        /// The variable, demangled.
        symbol: String,
    },
    /// No symbol of that name or path is visible (for handles).
    NoSuchSymbol {
        /// The namespace searched.
        namespace: String,
        /// The name or path asked for.
        symbol: String,
    },
    /// A path matches several symbols (for handles); the mangled names are listed.
    AmbiguousSymbol {
        /// The path asked for.
        symbol: String,
        /// The candidates.
        candidates: Vec<String>,
    },
    /// A handle's type is not the size of a function pointer.
    BadHandleType {
        /// The symbol.
        symbol: String,
    },
    /// An export policy or the safe-application rule refused the cell (`policy.rs`).
    Policy(alloc::boxed::Box<crate::policy::types::PolicyError>),
}

/// A [`LoadError::Malformed`] for `cell`.
#[cold]
pub(crate) fn malformed(cell: &str, what: Malformation) -> LoadError {
    LoadError::Malformed {
        cell: cell.into(),
        what,
    }
}

/// A [`LoadError::Truncated`] for `cell`.
#[cold]
pub(crate) fn truncated(cell: &str, what: Truncation) -> LoadError {
    LoadError::Truncated {
        cell: cell.into(),
        what,
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadError::*;
        match self {
            Empty { cell } => write!(f, "cell `{cell}`: the object file is empty"),
            NotElf { cell } => write!(f, "cell `{cell}`: not an ELF file"),
            Truncated { cell, what } => {
                write!(f, "cell `{cell}`: the object is truncated: {what} is cut off")
            }
            WrongClass { cell } => write!(
                f,
                "cell `{cell}`: a 32-bit ELF object; cells are 64-bit x86_64 objects"
            ),
            WrongEndian { cell } => write!(f, "cell `{cell}`: a big-endian ELF object"),
            WrongMachine { cell, machine } => write!(
                f,
                "cell `{cell}`: built for machine {machine} ({}), not x86_64",
                machine_name(*machine)
            ),
            NotRelocatable { cell, e_type } => write!(
                f,
                "cell `{cell}`: an {e_type} file; a cell is a relocatable object (ET_REL)"
            ),
            Malformed { cell, what } => write!(f, "cell `{cell}`: malformed object: {what}"),
            UnknownRelocation {
                cell,
                section,
                offset,
                r_type,
            } => write!(
                f,
                "cell `{cell}`: unknown relocation type {r_type} at {section}+{offset:#x}"
            ),
            RelocationOverflow {
                cell,
                section,
                offset,
                r_type,
                symbol,
                value,
            } => write!(
                f,
                "cell `{cell}`: {r_type} at {section}+{offset:#x} against `{symbol}`: \
                 value {value:#x} does not fit its field"
            ),
            UndefinedSymbols {
                cell,
                namespace,
                missing,
                cause,
            } => {
                write!(
                    f,
                    "cell `{cell}`: {} undefined symbol{} (searched namespace `{namespace}`, its \
                     parents, the base image and the platform):",
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" }
                )?;
                for m in missing {
                    write!(f, "\n  {} ({})", m.demangled, m.mangled)?;
                    if let Some(other) = &m.other_hash {
                        write!(f, "\n    the base image has it under another hash: {other}")?;
                    }
                    if let Some(ns) = &m.hidden_in {
                        write!(
                            f,
                            "\n    defined in namespace `{ns}`, which `{namespace}` cannot see"
                        )?;
                    } else if let Some(cell) = &m.defined_by {
                        write!(
                            f,
                            "\n    exported by `{cell}`, which is not loaded where `{namespace}` \
                             can see it"
                        )?;
                    }
                }
                let mut crates: Vec<&str> = missing
                    .iter()
                    .filter(|m| m.hidden_in.is_none())
                    .filter_map(|m| m.defined_by.as_deref())
                    .collect();
                crates.sort_unstable();
                crates.dedup();
                match cause {
                    Some(MissingCause::NotLoaded) => write!(
                        f,
                        "\n  likely cause: the crates that define them are not loaded: {} (load \
                         their dependency cells first; the manifest lists what each cell needs)",
                        crates
                            .iter()
                            .map(|c| alloc::format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some(MissingCause::Toolchain) => write!(
                        f,
                        "\n  likely cause: the cell was built by another toolchain than the base \
                         image (core/alloc/std symbols carry other hashes); rebuild it with the \
                         pinned rustc"
                    ),
                    Some(MissingCause::CrateIdentity) => write!(
                        f,
                        "\n  likely cause: a crate's identity (version, features or profile) \
                         differs between the cell's build and the base image's"
                    ),
                    None => Ok(()),
                }
            }
            IntegrityMismatch {
                cell,
                expected,
                actual,
            } => write!(
                f,
                "cell `{cell}`: the object's SHA-256 is {actual}, the manifest says {expected}: \
                 refusing to map it"
            ),
            AlreadyLoaded { cell, namespace } => {
                write!(f, "cell `{cell}` is already loaded in namespace `{namespace}`")
            }
            Namespace { cell, error } => write!(f, "cell `{cell}`: {error}"),
            Platform { cell, error } => write!(f, "cell `{cell}`: {error}"),
            UnsupportedTls { cell, symbol } => write!(
                f,
                "cell `{cell}`: its thread-local reference to `{symbol}` cannot be served (the symbol \
                 is not thread-local, or its cell has no thread-local storage on this platform)"
            ),
            NoSuchSymbol { namespace, symbol } => {
                write!(f, "no symbol `{symbol}` is visible from namespace `{namespace}`")
            }
            AmbiguousSymbol { symbol, candidates } => {
                write!(f, "`{symbol}` matches {} symbols:", candidates.len())?;
                for c in candidates {
                    write!(f, "\n  {}", demangle::demangle(c))?;
                }
                Ok(())
            }
            BadHandleType { symbol } => write!(
                f,
                "a handle to `{symbol}` must have the size of a function pointer"
            ),
            Policy(error) => write!(f, "{error}"),
        }
    }
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "i386",
        40 => "ARM",
        62 => "x86_64",
        183 => "AArch64",
        243 => "RISC-V",
        _ => "unknown",
    }
}

impl core::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            LoadError::Namespace { error, .. } => Some(error),
            LoadError::Platform { error, .. } => Some(error),
            LoadError::Malformed { what, .. } => Some(what),
            _ => None,
        }
    }
}
