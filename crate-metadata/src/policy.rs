//! Export policies: what an application may bind to.
//!
//! A kernel or library cell declares its **application interface** in its `Cargo.toml`
//! (`[package.metadata.cell] app_interface = ["greet::hello", "greet::Greeting::*"]`); the build
//! copies it into the cell's [`ManifestEntry::app_interface`](crate::ManifestEntry). Everything
//! else it defines is bindable only by cells of the kernel namespace. A cell loaded into an
//! application's namespace (the application, a library it brings, a dependency cell loaded for
//! it) binds to something outside its namespace only when one [`Rule`] allows it:
//!
//! | rule | allows |
//! |------|--------|
//! | [`Rule::Interface`] | a symbol of a kernel or library cell whose path its interface lists |
//! | [`Rule::Instance`] | a generic instance a kernel cell made under an interface path (`<greet::Greeting as core::fmt::Display>::fmt` for `greet::Greeting::*`), or made under a toolchain path |
//! | [`Rule::Toolchain`] | `core`, `alloc`, `std` (and the crates they ship with) in the base image |
//! | [`Rule::VettedCrate`] | a dependency crate (`log`, `spin`): a dependency cell, or the base image's copy |
//! | [`Rule::Runtime`] | what the compiler emits calls to: `memcpy`, the allocator shim, `_Unwind_Resume`, … |
//! | [`Rule::Own`] | a cell of the application's own namespace that declares no interface (dependency cells, the application itself) |
//! | [`Rule::Grant`] | a cell of the application's own namespace that its namespace policy grants (`grants = ["greet"]`: a library it brings, internals included) |
//!
//! A namespace's grants only ever reach cells of that namespace: an application cannot grant
//! itself a kernel cell. Patterns match demangled paths without hashes ([`crate::demangle::path`]):
//! `a::b` matches `a::b` exactly, `a::b::*` matches every path below `a::b`, and a trait
//! implementation `<a::B as T>::f` is matched by its type's path (`a::B::f`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::demangle;

/// A cell's application interface: path patterns, as declared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInterface {
    /// The patterns (`greet::hello`, `greet::Greeting::*`), sorted.
    pub items: Vec<String>,
}

impl AppInterface {
    /// An interface of `items`.
    pub fn new(items: impl IntoIterator<Item = String>) -> AppInterface {
        let mut items: Vec<String> = items.into_iter().collect();
        items.sort();
        items.dedup();
        AppInterface { items }
    }

    /// The pattern that lets an application bind to the mangled `symbol`, if any.
    pub fn allows(&self, symbol: &str) -> Option<&str> {
        let path = interface_path(symbol);
        self.items
            .iter()
            .find(|p| pattern_matches(p, &path))
            .map(String::as_str)
    }
}

/// Whether the pattern `pattern` matches the path `path` (see the module doc).
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("::*") {
        Some(prefix) => path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with("::")),
        None => path == pattern,
    }
}

/// The path an interface pattern is matched against: the demangled path, with a trait
/// implementation `<a::B as c::T>::f` (or a generic `<a::B<T> as …>`) read as `a::B::f`.
pub fn interface_path(symbol: &str) -> String {
    let path = demangle::path(symbol);
    let Some(inner) = path.strip_prefix('<') else {
        return path;
    };
    let Some((ty, rest)) = inner.split_once(" as ") else {
        return path;
    };
    let ty = ty.split('<').next().unwrap_or(ty);
    let method = rest.rsplit_once(">::").map_or("", |(_, m)| m);
    if method.is_empty() {
        return String::from(ty);
    }
    alloc::format!("{ty}::{method}")
}

/// Symbols the compiler emits references to on its own: memory intrinsics, the allocator shim,
/// unwinding, thread-local access and stack probes. Names starting with `__rust_` are the shim.
pub const RUNTIME_SYMBOLS: &[&str] = &[
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "bcmp",
    "strlen",
    "rust_eh_personality",
    "_Unwind_Resume",
    "__tls_get_addr",
    "__rust_probestack",
];

/// Whether the compiler emits references to `symbol` on its own (see [`RUNTIME_SYMBOLS`]).
pub fn is_runtime_symbol(symbol: &str) -> bool {
    symbol.starts_with("__rust_")
        || RUNTIME_SYMBOLS.contains(&symbol)
        || demangle::path(symbol).starts_with("__rustc::")
}

/// The crate a symbol belongs to for the policy: its path's first segment, and for a trait
/// implementation `<T as Trait>::f` the crate of `T`, or of `Trait` when `T` is a primitive
/// (`<str as core::fmt::Display>::fmt` is `core`'s).
pub fn symbol_crate(symbol: &str) -> Option<String> {
    let path = demangle::path(symbol);
    let Some(inner) = path.strip_prefix('<') else {
        return demangle::crate_of(symbol);
    };
    let (ty, rest) = inner.split_once(" as ").unwrap_or((inner, ""));
    let ty = ty
        .trim_start_matches(['&', '*', '[', '('])
        .trim_start_matches("mut ");
    let first = |p: &str| {
        p.split("::")
            .next()
            .filter(|c| !c.is_empty())
            .map(String::from)
    };
    if ty.contains("::") {
        return first(ty);
    }
    first(rest.trim_start_matches(['&', '*', '[', '(']))
}

/// Why an application may bind to a symbol outside its namespace (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// The provider's application interface lists it.
    Interface {
        /// The pattern that matched.
        pattern: String,
    },
    /// A generic instance made under a path the interface lists, or under a toolchain path.
    Instance {
        /// The interface pattern that matched, or the toolchain crate.
        pattern: String,
    },
    /// A toolchain crate in the base image.
    Toolchain {
        /// The crate (`core`, `alloc`, `std`).
        krate: String,
    },
    /// A dependency crate, vetted and listed in the manifest.
    VettedCrate {
        /// The crate.
        krate: String,
    },
    /// A symbol the compiler emits references to.
    Runtime,
    /// A cell of the application's own namespace with no interface of its own.
    Own,
    /// A cell of the application's own namespace that the namespace's policy grants.
    Grant {
        /// The granted cell.
        cell: String,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Interface { pattern } => write!(f, "interface `{pattern}`"),
            Rule::Instance { pattern } => write!(f, "instance of `{pattern}`"),
            Rule::Toolchain { krate } => write!(f, "toolchain `{krate}`"),
            Rule::VettedCrate { krate } => write!(f, "vetted crate `{krate}`"),
            Rule::Runtime => f.write_str("runtime"),
            Rule::Own => f.write_str("own namespace"),
            Rule::Grant { cell } => write!(f, "granted `{cell}`"),
        }
    }
}

/// The rule that refused a binding: what the provider is and what it does not offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    /// A kernel or library cell whose application interface does not list the symbol (or that
    /// declares none).
    NotInInterface {
        /// How many patterns its interface has (0: it declares none).
        declared: usize,
    },
    /// A crate of the base image that is neither a toolchain nor a vetted dependency crate (the
    /// loader, the kernel's own crates).
    BaseImageCrate {
        /// The crate, or `None` for a name that is not a Rust path.
        krate: Option<String>,
    },
    /// A platform symbol the compiler does not emit on its own.
    Platform,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotInInterface { declared: 0 } => f.write_str(
                "the cell declares no application interface, so only kernel cells bind to it",
            ),
            Refusal::NotInInterface { .. } => f.write_str(
                "not in the cell's application interface, so only kernel cells bind to it",
            ),
            Refusal::BaseImageCrate { krate: Some(k) } => write!(
                f,
                "the base image's crate `{k}` is neither a toolchain nor a vetted dependency crate"
            ),
            Refusal::BaseImageCrate { krate: None } => {
                f.write_str("a base image symbol outside every crate applications may use")
            }
            Refusal::Platform => {
                f.write_str("a platform symbol the compiler does not emit on its own")
            }
        }
    }
}

/// Who defines a symbol an application's cell binds to, as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub enum Provider<'a> {
    /// A cell of the application's own namespace.
    Own {
        /// Its name.
        cell: &'a str,
        /// Its interface, when it is a kernel or library cell (`None` for dependency and
        /// application cells).
        interface: Option<&'a AppInterface>,
        /// Whether the namespace's policy grants it.
        granted: bool,
    },
    /// A cell of an enclosing namespace (the kernel).
    Kernel {
        /// Its interface (`None`: it declares none).
        interface: Option<&'a AppInterface>,
        /// Whether it is a dependency cell (a vetted crate), and which crate.
        vetted: Option<&'a str>,
    },
    /// The base image, with the dependency crates it links that are vetted.
    Base {
        /// The vetted crates the image links (`log`, `memchr`).
        vetted: &'a [String],
    },
    /// The platform.
    Platform,
}

/// Decides whether an application's cell may bind to `symbol` defined by `provider`.
pub fn decide(provider: Provider<'_>, symbol: &str) -> Result<Rule, Refusal> {
    match provider {
        Provider::Own {
            cell,
            interface,
            granted,
        } => match interface {
            None => Ok(Rule::Own),
            Some(_) if granted => Ok(Rule::Grant { cell: cell.into() }),
            Some(i) => interface_rule(i, symbol),
        },
        Provider::Kernel {
            vetted: Some(k), ..
        } => Ok(Rule::VettedCrate { krate: k.into() }),
        Provider::Kernel { interface, .. } => match interface {
            Some(i) => interface_rule(i, symbol),
            None => Err(Refusal::NotInInterface { declared: 0 }),
        },
        Provider::Base { vetted } => {
            if is_runtime_symbol(symbol) {
                return Ok(Rule::Runtime);
            }
            let krate = symbol_crate(symbol);
            match krate {
                Some(k) if demangle::is_toolchain_crate(&k) => Ok(Rule::Toolchain { krate: k }),
                Some(k) if vetted.contains(&k) => Ok(Rule::VettedCrate { krate: k }),
                krate => Err(Refusal::BaseImageCrate { krate }),
            }
        }
        Provider::Platform if is_runtime_symbol(symbol) => Ok(Rule::Runtime),
        Provider::Platform => Err(Refusal::Platform),
    }
}

/// The interface rule for `symbol`: listed, or an instance a cell made under a listed path or a
/// toolchain path (`<alloc::vec::Vec<greet::Greeting> as core::ops::Drop>::drop`).
fn interface_rule(interface: &AppInterface, symbol: &str) -> Result<Rule, Refusal> {
    if let Some(p) = interface.allows(symbol) {
        // A legacy-mangled symbol under a generic path is an instance; the rest are the items.
        let instance = demangle::path(symbol).contains('<');
        return Ok(if instance {
            Rule::Instance { pattern: p.into() }
        } else {
            Rule::Interface { pattern: p.into() }
        });
    }
    if let Some(k) = symbol_crate(symbol).filter(|k| demangle::is_toolchain_crate(k)) {
        return Ok(Rule::Instance { pattern: k });
    }
    Err(Refusal::NotInInterface {
        declared: interface.items.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn iface(items: &[&str]) -> AppInterface {
        AppInterface::new(items.iter().map(|s| String::from(*s)))
    }

    #[test]
    fn patterns_match_paths_and_subtrees() {
        assert!(pattern_matches("greet::hello", "greet::hello"));
        assert!(!pattern_matches("greet::hello", "greet::hello_world"));
        assert!(pattern_matches("greet::G::*", "greet::G::new"));
        assert!(!pattern_matches("greet::G::*", "greet::Gx::new"));
        assert!(pattern_matches("*", "anything"));
    }

    #[test]
    fn trait_impls_read_as_the_type_path() {
        assert_eq!(
            interface_path("_ZN54_$LT$greet..Greeting$u20$as$u20$core..fmt..Display$GT$3fmt17h0123456789abcdefE"),
            "greet::Greeting::fmt"
        );
    }

    #[test]
    fn kernel_cells_without_interface_refuse() {
        let k = Provider::Kernel {
            interface: None,
            vetted: None,
        };
        assert_eq!(
            decide(k, "_ZN11frame_alloc10free_frame17h0123456789abcdefE"),
            Err(Refusal::NotInInterface { declared: 0 })
        );
        let i = iface(&["frame_alloc::alloc_frame"]);
        let k = Provider::Kernel {
            interface: Some(&i),
            vetted: None,
        };
        assert_eq!(
            decide(k, "_ZN11frame_alloc11alloc_frame17h0123456789abcdefE"),
            Ok(Rule::Interface {
                pattern: "frame_alloc::alloc_frame".into()
            })
        );
        assert!(decide(k, "_ZN11frame_alloc10free_frame17h0123456789abcdefE").is_err());
    }

    #[test]
    fn base_image_allows_toolchain_vetted_and_runtime_only() {
        let vetted = vec![String::from("log")];
        let b = Provider::Base { vetted: &vetted };
        assert_eq!(decide(b, "memcpy"), Ok(Rule::Runtime));
        assert_eq!(decide(b, "__rust_alloc"), Ok(Rule::Runtime));
        assert!(matches!(
            decide(b, "_ZN3log6logger17h0123456789abcdefE"),
            Ok(Rule::VettedCrate { .. })
        ));
        assert_eq!(
            decide(b, "_ZN6loader4load17h0123456789abcdefE"),
            Err(Refusal::BaseImageCrate {
                krate: Some("loader".into())
            })
        );
        assert_eq!(decide(Provider::Platform, "write"), Err(Refusal::Platform));
    }

    #[test]
    fn grants_reach_own_cells_only() {
        let i = iface(&["greet::hello"]);
        let own = |granted| Provider::Own {
            cell: "greet",
            interface: Some(&i),
            granted,
        };
        let internal = "_ZN5greet8internal17h0123456789abcdefE";
        assert!(decide(own(false), internal).is_err());
        assert_eq!(
            decide(own(true), internal),
            Ok(Rule::Grant {
                cell: "greet".into()
            })
        );
    }
}
