//! Errors as people read them. A leaf.
//!
//! `nano_core` keeps the loader's typed errors ([`loader::LoadError`], [`loader::SwapError`],
//! [`loader::UnloadError`], [`loader::ReclaimError`], [`namespace::NamespaceError`]) in its
//! `anyhow` errors, with context added on top, so that a caller (and a test) finds the variant
//! with [`anyhow::Error::downcast_ref`] or in [`anyhow::Error::chain`]. The loader's errors say
//! their cause in their own message as well as in [`std::error::Error::source`], so the usual
//! `{:#}` rendering would say it twice; [`render`] says each cause once.

use std::error::Error;

/// The error and its causes on one line, `outer: cause: …`, leaving out a cause whose message the
/// layer above already contains.
pub fn render(error: &anyhow::Error) -> String {
    render_chain(error.chain())
}

/// [`render`] for any chain of causes, outermost first.
pub fn render_chain<'a>(chain: impl Iterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    let mut above = String::new();
    for cause in chain {
        let text = cause.to_string();
        if !above.is_empty() && above.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        above = text;
    }
    out
}

/// The first error of type `E` in the chain of `error`: the typed cause under the context.
pub fn find<E: Error + Send + Sync + 'static>(error: &anyhow::Error) -> Option<&E> {
    error.chain().find_map(|e| e.downcast_ref::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn each_cause_is_said_once() {
        let inner = loader::LoadError::NoSuchSymbol {
            namespace: "_kernel".into(),
            symbol: "memfs::nope".into(),
        };
        let e = Err::<(), _>(inner.clone())
            .context("swapping `memfs`")
            .unwrap_err();
        assert_eq!(render(&e), format!("swapping `memfs`: {inner}"));
        assert_eq!(find::<loader::LoadError>(&e), Some(&inner));
        let platform = loader::platform::PlatformError::OutOfMemory { len: 4096 };
        let wrapped = loader::LoadError::Platform {
            cell: "memfs".into(),
            error: platform,
        };
        let e = anyhow::Error::new(wrapped.clone());
        // `{:#}` would repeat the platform's message; `render` says it once.
        assert_eq!(render(&e), wrapped.to_string());
    }
}
