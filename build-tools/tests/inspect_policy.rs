//! The dry link holds applications to the export policies and the safety claim as `nano_core`
//! does: an application that binds to what the kernel does not export to it, or whose entry does
//! not claim it was built with `unsafe` forbidden, is refused before anything is mapped and
//! reported with the loader's error, and the other cells link as before.

mod inspect_support;

use build_tools::inspect::model::UnresolvedCell;
use build_tools::inspect::{show, Options, Query};
use crate_metadata::{AppInterface, CellKind};
use inspect_support::{dry_link_edited, model};

fn refused<'a>(unresolved: &'a [UnresolvedCell], cell: &str) -> &'a UnresolvedCell {
    unresolved
        .iter()
        .find(|u| u.name == cell)
        .unwrap_or_else(|| panic!("{cell} is not reported: {unresolved:?}"))
}

#[test]
fn the_real_applications_link_under_the_policies() {
    let s = &model().snapshot;
    assert!(s.unresolved.is_empty(), "{:?}", s.unresolved);
    for app in ["banner", "crasher", "hello", "hola", "sleeper"] {
        assert!(s.registry.cells().any(|c| c.name == app), "{app} linked");
    }
}

#[test]
fn the_dry_link_refuses_an_application_binding_to_what_the_kernel_does_not_export() {
    // The kernel's `greet` exports applications only `greet::revision`; `hello` binds to
    // `greet::greeting`.
    let m = dry_link_edited(|m, _| {
        let greet = m.get_mut(CellKind::Libs, "greet").unwrap();
        greet.app_interface = Some(AppInterface::new(["greet::revision".to_string()]));
    });
    let s = &m.snapshot;
    let hello = refused(&s.unresolved, "hello");
    assert_eq!(hello.namespace, "app:hello");
    assert!(
        hello.message.contains("applications may not use")
            && hello.message.contains("greet::greeting::h")
            && hello.message.contains("in `greet`"),
        "{}",
        hello.message
    );
    let app_cells = |name: &str| {
        s.registry
            .cells()
            .filter(|c| c.name == name && c.kind == Some(CellKind::Apps))
            .count()
    };
    assert_eq!(app_cells("hello"), 0, "nothing of hello was linked");
    // `hola` binds to the `greet` it brings, which its namespace grants it: it still links.
    assert_eq!(app_cells("hola"), 1);
    assert!(!s.unresolved.iter().any(|u| u.name == "hola"));
    let text = show(&m, &Query::Unresolved, &Options::default()).unwrap();
    assert!(
        text.contains("hello 0.1.0 [app:hello] would fail to link"),
        "{text}"
    );
}

#[test]
fn the_dry_link_refuses_an_application_without_the_safety_claim() {
    let m = dry_link_edited(|m, _| {
        let hello = m.get_mut(CellKind::Apps, "hello").unwrap();
        hello.unsafe_forbidden = false;
    });
    let s = &m.snapshot;
    let hello = refused(&s.unresolved, "hello");
    assert!(
        hello.message.contains("not built with `unsafe` forbidden"),
        "{}",
        hello.message
    );
    assert_eq!(s.unresolved.len(), 1, "{:?}", s.unresolved);
}
