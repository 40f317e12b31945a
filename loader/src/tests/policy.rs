//! Export policies and safe applications: a confined namespace binds only to what an interface,
//! a grant or a rule allows; an application must be admitted; a swap may not narrow an interface
//! an application binds to. Refusals leave the system exactly as it was, with nothing mapped.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;

use crate::error::LoadError;
use crate::policy::{NamespacePolicy, PolicyError, RefusedBinding};
use crate::swap::{NewVersion, SwapError, SwapOptions, SwapRequest};
use crate::system::System;
use crate::testing::cells::{p_f, p_h, provider, u_g, user, Provider};
use crate::testing::elf::{Cell, R_PLT32};
use crate::testing::{system, HeapPlatform, SystemState};
use crate::{sha256, CellSpec};
use crate_metadata::{AppInterface, CellKind, NamespaceId, Refusal, Sha256};
use object::SymbolKind;

/// The test cells' symbols, demangled as errors name them.
const P_F: &str = "p::f::h0123456789abcdef";
const P_H: &str = "p::h::h0123456789abcdef";
const P_STATE: &str = "p::STATE::h0123456789abcdef";

/// The policy error of a load refused by a policy.
fn policy(e: LoadError) -> PolicyError {
    match e {
        LoadError::Policy(p) => *p,
        e => panic!("not a policy refusal: {e}"),
    }
}

fn interface(items: &[&str]) -> AppInterface {
    AppInterface::new(items.iter().map(|s| String::from(*s)))
}

fn spec(name: &str, kind: CellKind, sha: Sha256) -> CellSpec<'_> {
    CellSpec {
        name,
        version: "0.1.0",
        kind: Some(kind),
        sha256: Some(sha),
    }
}

/// `p` in `_kernel` with the interface `items`, and a confined application namespace under it.
fn kernel_with(items: &[&str]) -> (System<HeapPlatform>, NamespaceId, NamespaceId) {
    let (mut system, kernel) = system();
    let bytes = provider();
    let sha = sha256(&bytes);
    system.declare_interface(sha, interface(items));
    system
        .load(kernel, spec("p", CellKind::Kernel, sha), &bytes)
        .unwrap();
    let app = system.create_namespace("app:u#1", Some(kernel)).unwrap();
    system.confine_namespace(app, NamespacePolicy::default());
    (system, kernel, app)
}

#[test]
fn an_application_binding_to_a_non_exported_symbol_is_refused_by_name_with_nothing_mapped() {
    let (mut system, _, app) = kernel_with(&["p::h"]);
    let bytes = user();
    let sha = sha256(&bytes);
    system.admit_application(sha);
    let before = SystemState::of(&system);
    let calls = system.platform().calls();
    let err = system
        .load(app, spec("u", CellKind::Apps, sha), &bytes)
        .unwrap_err();
    let refused = |symbol: &str| RefusedBinding {
        symbol: symbol.into(),
        provider: "p".into(),
        refusal: Refusal::NotInInterface { declared: 1 },
    };
    let PolicyError::Refused {
        cell,
        namespace,
        mut bindings,
    } = policy(err)
    else {
        panic!("not a refusal");
    };
    bindings.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    bindings.dedup();
    assert_eq!(cell, "u");
    assert_eq!(namespace, "app:u#1");
    assert_eq!(bindings, vec![refused(P_STATE), refused(P_F)]);
    assert_eq!(system.platform().calls(), calls, "no memory was mapped");
    before.assert_same(&SystemState::of(&system), "refused load");
}

#[test]
fn an_interface_that_lists_the_symbols_lets_the_application_bind() {
    let (mut system, _, app) = kernel_with(&["p::f", "p::STATE"]);
    let bytes = user();
    let sha = sha256(&bytes);
    system.admit_application(sha);
    system
        .load(app, spec("u", CellKind::Apps, sha), &bytes)
        .unwrap();
}

#[test]
fn an_application_not_built_safe_is_refused_unless_admitted() {
    let (mut system, _, app) = kernel_with(&["p::*"]);
    let bytes = user();
    let sha = sha256(&bytes);
    let before = SystemState::of(&system);
    let err = system
        .load(app, spec("u", CellKind::Apps, sha), &bytes)
        .unwrap_err();
    assert_eq!(
        err,
        LoadError::Policy(Box::new(PolicyError::UnsafeApplication {
            cell: "u".into()
        }))
    );
    before.assert_same(&SystemState::of(&system), "refused application");
    system.admit_application(sha);
    system
        .load(app, spec("u", CellKind::Apps, sha), &bytes)
        .unwrap();
}

#[test]
fn an_application_may_bind_to_the_internals_of_a_library_it_brings_when_its_namespace_grants_it() {
    let (mut system, kernel) = system();
    let p = provider();
    let p_sha = sha256(&p);
    system.declare_interface(p_sha, interface(&["p::h"]));
    let u = user();
    let u_sha = sha256(&u);
    system.admit_application(u_sha);
    for (n, grants) in [(1, vec![]), (2, vec![String::from("p")])] {
        let name = alloc::format!("app:u#{n}");
        let app = system.create_namespace(&name, Some(kernel)).unwrap();
        system.confine_namespace(app, NamespacePolicy { grants });
        // The library the application brings, into its own namespace.
        system
            .load(app, spec("p", CellKind::Upgrades, p_sha), &p)
            .unwrap();
        let result = system.load(app, spec("u", CellKind::Apps, u_sha), &u);
        if n == 1 {
            assert!(
                matches!(result.map_err(policy), Err(PolicyError::Refused { .. })),
                "without the grant, its interface holds"
            );
        } else {
            result.unwrap();
        }
    }
}

#[test]
fn a_grant_never_reaches_a_kernel_cell() {
    let (mut system, kernel) = system();
    let p = provider();
    let p_sha = sha256(&p);
    system.declare_interface(p_sha, interface(&["p::h"]));
    system
        .load(kernel, spec("p", CellKind::Kernel, p_sha), &p)
        .unwrap();
    let app = system.create_namespace("app:u#1", Some(kernel)).unwrap();
    system.confine_namespace(
        app,
        NamespacePolicy {
            grants: vec!["p".into()],
        },
    );
    let u = user();
    let u_sha = sha256(&u);
    system.admit_application(u_sha);
    let err = system
        .load(app, spec("u", CellKind::Apps, u_sha), &u)
        .unwrap_err();
    assert!(matches!(policy(err), PolicyError::Refused { .. }));
}

#[test]
fn a_swap_that_removes_an_export_an_application_uses_is_refused_naming_the_application() {
    let (mut system, kernel, app) = kernel_with(&["p::*"]);
    let u = user();
    let u_sha = sha256(&u);
    system.admit_application(u_sha);
    system
        .load(app, spec("u", CellKind::Apps, u_sha), &u)
        .unwrap();
    let new = Provider {
        answer: 43,
        ..Provider::default()
    }
    .object();
    let new_sha = sha256(&new);
    // The new version offers applications only `p::h`.
    system.declare_interface(new_sha, interface(&["p::h"]));
    let before = SystemState::of(&system);
    let swap = |system: &mut System<HeapPlatform>| {
        let old = system.cell_in(kernel, "p").unwrap();
        system.swap(
            &[SwapRequest {
                old,
                new: NewVersion::Object {
                    spec: spec("p", CellKind::Kernel, new_sha),
                    bytes: &new,
                },
            }],
            &SwapOptions::default(),
        )
    };
    let err = swap(&mut system).unwrap_err();
    let SwapError::Policy(policy) = err else {
        panic!("{err}");
    };
    let PolicyError::InterfaceNarrowed {
        cell,
        app: who,
        namespace,
        refusal,
        ..
    } = *policy
    else {
        panic!("{policy}");
    };
    assert_eq!(
        (cell.as_str(), who.as_str(), namespace.as_str()),
        ("p", "u", "app:u#1")
    );
    assert_eq!(refusal, Refusal::NotInInterface { declared: 1 });
    before.assert_same(&SystemState::of(&system), "refused swap");
    // The same version with its interface kept swaps.
    system.declare_interface(new_sha, interface(&["p::*"]));
    swap(&mut system).unwrap();
}

/// A version of the application `u` whose `g` calls `callee` (mangled) and returns `answer`.
fn app_calling(callee: &str, answer: u8) -> alloc::vec::Vec<u8> {
    let mut cell = Cell::new();
    // call rel32; mov eax, answer; ret
    let code = [0xe8, 0, 0, 0, 0, 0xb8, answer, 0, 0, 0, 0xc3];
    let (text, _) = cell.func(&u_g(), &code);
    let target = cell.undefined(callee, SymbolKind::Text, false);
    cell.reloc(text, 1, target, R_PLT32, -4);
    cell.bytes()
}

#[test]
fn a_new_version_of_an_application_is_held_to_its_namespace_policy() {
    // `p` offers applications `p::f` only; `u` v1 calls it.
    let (mut system, _, app) = kernel_with(&["p::f"]);
    let v1 = app_calling(&p_f(), 1);
    let v1_sha = sha256(&v1);
    system.admit_application(v1_sha);
    system
        .load(app, spec("u", CellKind::Apps, v1_sha), &v1)
        .unwrap();
    let old = system.cell_in(app, "u").unwrap();
    // A new version names itself as `nano_core` names one from `cells/upgrades`.
    let swap = |system: &mut System<HeapPlatform>, bytes: &[u8], sha: Sha256| {
        system.swap(
            &[SwapRequest {
                old,
                new: NewVersion::Object {
                    spec: spec("u", CellKind::Upgrades, sha),
                    bytes,
                },
            }],
            &SwapOptions::default(),
        )
    };
    let stage_policy = |e: SwapError| match e {
        SwapError::Stage(LoadError::Policy(p)) => *p,
        e => panic!("not a policy refusal at staging: {e}"),
    };

    // v2 calls `p::h`, which `p` does not export to applications: refused by name, under the
    // application's namespace, with nothing mapped or changed.
    let v2 = app_calling(&p_h(), 2);
    let v2_sha = sha256(&v2);
    system.admit_application(v2_sha);
    let before = SystemState::of(&system);
    let calls = system.platform().calls();
    let err = stage_policy(swap(&mut system, &v2, v2_sha).unwrap_err());
    assert_eq!(
        err,
        PolicyError::Refused {
            cell: "u".into(),
            namespace: "app:u#1".into(),
            bindings: vec![RefusedBinding {
                symbol: P_H.into(),
                provider: "p".into(),
                refusal: Refusal::NotInInterface { declared: 1 },
            }],
        }
    );
    assert_eq!(system.platform().calls(), calls, "no memory was mapped");
    before.assert_same(&SystemState::of(&system), "refused application swap");

    // v3 binds only to `p::f`, but nobody admitted its object: a new version of an application
    // is one too, whatever kind it is named.
    let v3 = app_calling(&p_f(), 3);
    let v3_sha = sha256(&v3);
    let err = stage_policy(swap(&mut system, &v3, v3_sha).unwrap_err());
    assert_eq!(err, PolicyError::UnsafeApplication { cell: "u".into() });
    before.assert_same(&SystemState::of(&system), "refused unadmitted version");
    system.admit_application(v3_sha);
    swap(&mut system, &v3, v3_sha).unwrap();

    // And the version after it, which the request names `upgrades` as v3's did: still held.
    let old = system.cell_in(app, "u").unwrap();
    let v4 = app_calling(&p_f(), 4);
    let v4_sha = sha256(&v4);
    let err = system
        .swap(
            &[SwapRequest {
                old,
                new: NewVersion::Object {
                    spec: spec("u", CellKind::Upgrades, v4_sha),
                    bytes: &v4,
                },
            }],
            &SwapOptions::default(),
        )
        .unwrap_err();
    assert_eq!(
        stage_policy(err),
        PolicyError::UnsafeApplication { cell: "u".into() }
    );
}
