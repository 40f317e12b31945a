//! Export policies in the views: a cell's application interface (`info`), and for each edge that
//! crosses from an application's namespace into the kernel, the base image or the platform, the
//! rule that allowed it (`deps`, `info`'s imports). The rules are `crate_metadata::policy`'s, read
//! against the manifest (each provider's interface by its object's SHA-256, the application's
//! grants, the dependency crates), so offline and live views agree with what the loader enforced.

use crate_metadata::policy::{decide, AppInterface, Provider};
use crate_metadata::{Cell, CellKind, EdgeId, ManifestEntry, Registry};

use super::model::Index;

/// The manifest entry of the object `cell` was loaded from (by SHA-256).
fn entry_of<'a>(index: &Index<'a>, cell: &Cell) -> Option<&'a ManifestEntry> {
    let sha = cell.sha256?;
    index
        .crates
        .manifest()?
        .cells
        .iter()
        .find(|e| e.sha256 == sha)
}

/// The application interface `cell` declares, if any.
pub fn app_interface(index: &Index<'_>, cell: &Cell) -> Option<AppInterface> {
    entry_of(index, cell)?.app_interface.clone()
}

/// Whether `cell` lives in an application's namespace (`app:<name>#<n>`).
pub fn in_app_namespace(index: &Index<'_>, cell: &Cell) -> bool {
    index
        .namespace_name(cell)
        .is_some_and(|n| n.starts_with("app:"))
}

/// For an edge from `dependent` (in an application's namespace) to `symbol` of `provider` outside
/// that namespace: `app→kernel: <rule>`, or `app→kernel: refused: <why>`; inside it, for a
/// provider that declares an interface (a library the application brings), `app→own: <rule>`.
/// `None` for any other edge.
pub fn crossing_rule(
    index: &Index<'_>,
    dependent: &Cell,
    provider: &Cell,
    symbol: &str,
) -> Option<String> {
    if !in_app_namespace(index, dependent) {
        return None;
    }
    if provider.namespace == dependent.namespace {
        return own_rule(index, dependent, provider, symbol);
    }
    let vetted: Vec<String> = index
        .crates
        .manifest()
        .map(|m| {
            m.cells
                .iter()
                .filter(|e| e.kind == CellKind::Deps)
                .map(|e| e.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let interface = entry_of(index, provider).and_then(|e| e.app_interface.as_ref());
    let view = match provider.id {
        Registry::BASE => Provider::Base { vetted: &vetted },
        Registry::PLATFORM => Provider::Platform,
        _ => Provider::Kernel {
            interface,
            vetted: (provider.kind == Some(CellKind::Deps)).then_some(provider.name.as_str()),
        },
    };
    Some(match decide(view, symbol) {
        Ok(rule) => format!("app→kernel: {rule}"),
        Err(refusal) => format!("app→kernel: refused: {refusal}"),
    })
}

/// The distinct rules of the `edges` from `dependent` into `provider` (see [`crossing_rule`]);
/// empty when `dependent` is not an application's cell.
pub fn crossing_rules(
    index: &Index<'_>,
    dependent: &Cell,
    provider: &Cell,
    edges: &[EdgeId],
) -> Vec<String> {
    let mut rules: Vec<String> = edges
        .iter()
        .filter_map(|e| index.registry().edge(*e))
        .filter_map(|e| provider.symbol(e.symbol))
        .filter_map(|s| crossing_rule(index, dependent, provider, &s.name))
        .collect();
    rules.sort();
    rules.dedup();
    rules
}

/// The rule for an edge inside an application's namespace to a cell that declares an interface
/// (a library the application brings): granted by the application's entry, or its interface.
fn own_rule(index: &Index<'_>, dependent: &Cell, provider: &Cell, symbol: &str) -> Option<String> {
    if matches!(provider.kind, Some(CellKind::Deps | CellKind::Apps) | None) {
        return None;
    }
    let app = index
        .namespace_name(dependent)?
        .strip_prefix("app:")?
        .split('#')
        .next()?;
    let grants = index
        .crates
        .manifest()?
        .get(CellKind::Apps, app)
        .map(|e| e.grants.clone())
        .unwrap_or_default();
    let empty = AppInterface::default();
    let interface = entry_of(index, provider).and_then(|e| e.app_interface.as_ref());
    let view = Provider::Own {
        cell: &provider.name,
        interface: Some(interface.unwrap_or(&empty)),
        granted: grants.contains(&provider.name),
    };
    Some(match decide(view, symbol) {
        Ok(rule) => format!("app→own: {rule}"),
        Err(refusal) => format!("app→own: refused: {refusal}"),
    })
}
