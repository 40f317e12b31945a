//! Resolution: the lookup order, what a namespace sees, thread-locals, and how a missing symbol
//! is explained.

use alloc::string::String;
use alloc::sync::Arc;

use object::SymbolKind;

use crate::error::{LoadError, MissingCause};
use crate::platform::TlsSymbol;
use crate::resolve::{Catalog, Provider, Resolution};
use crate::testing::cells::{p_f, provider};
use crate::testing::elf::{mangle, Cell, Kind, R_64};
use crate::testing::{system_on, HeapPlatform};
use crate::CellSpec;
use crate_metadata::Registry;

fn found(resolution: Resolution) -> (u64, Provider) {
    match resolution {
        Resolution::Found(r) => (r.addr, r.provider),
        other => panic!("not found: {other:?}"),
    }
}

#[test]
fn the_namespace_comes_before_the_base_image_and_the_base_image_before_the_platform() {
    let mut platform = HeapPlatform::default();
    platform.image.insert(p_f(), 0x1111);
    platform.platform.insert(p_f(), 0x2222);
    platform.image.insert("image_only".into(), 0x3333);
    platform.platform.insert("image_only".into(), 0x4444);
    platform.platform.insert("platform_only".into(), 0x5555);
    let (mut system, ns) = system_on(platform);
    {
        let resolver = system.resolver();
        assert_eq!(
            found(resolver.resolve(ns, &p_f(), false)),
            (0x1111, Provider::Base)
        );
        assert_eq!(
            found(resolver.resolve(ns, "image_only", false)),
            (0x3333, Provider::Base)
        );
        assert_eq!(
            found(resolver.resolve(ns, "platform_only", false)),
            (0x5555, Provider::Platform)
        );
        assert_eq!(resolver.resolve(ns, "nowhere", false), Resolution::Missing);
        assert_eq!(
            found(resolver.resolve(ns, "__tls_get_addr", false)),
            (0x7e57_0000, Provider::Platform),
            "the loader's own __tls_get_addr"
        );
    }
    let p = system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    let (addr, provider) = found(system.resolver().resolve(ns, &p_f(), false));
    assert_eq!(
        provider.cell(),
        p,
        "a cell in the namespace shadows the base image"
    );
    assert_ne!(addr, 0x1111);
    assert_eq!(Provider::Base.cell(), Registry::BASE);
}

#[test]
fn a_namespace_sees_its_parents_but_not_its_siblings_or_children() {
    let (mut system, _) = system_on(HeapPlatform::default());
    let lib = system.create_namespace("lib", None).unwrap();
    let child = system.create_namespace("child", Some(lib)).unwrap();
    let sibling = system.create_namespace("sibling", None).unwrap();
    let p = system.load(lib, CellSpec::named("p"), &provider()).unwrap();
    assert_eq!(
        found(system.resolver().resolve(child, &p_f(), false))
            .1
            .cell(),
        p
    );
    assert_eq!(
        system.resolver().resolve(sibling, &p_f(), false),
        Resolution::Missing
    );
    let name = p_f();
    let (missing, cause) = system.resolver().explain(sibling, &[name.as_str()]);
    assert_eq!(missing[0].hidden_in.as_deref(), Some("lib"));
    assert_eq!(cause, None);
    assert_eq!(
        system.resolver().resolve(lib, "p::child_only", false),
        Resolution::Missing
    );
}

#[test]
fn thread_locals_resolve_only_as_thread_locals() {
    let mut platform = HeapPlatform::default();
    let tls = TlsSymbol {
        module: 1,
        offset: 0x18,
    };
    platform.image_tls.insert("base_tls".into(), tls);
    platform.image.insert("base_fn".into(), 0x1000);
    let (mut system, ns) = system_on(platform);
    match system.resolver().resolve(ns, "base_tls", true) {
        Resolution::Found(r) => assert_eq!((r.provider, r.tls), (Provider::Base, Some(tls))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        system.resolver().resolve(ns, "base_fn", true),
        Resolution::Missing
    );
    // A cell's own thread-local, seen from another cell: its module and offset.
    let mut cell = Cell::new();
    let tdata = cell.section(".tdata.v", Kind::Tls, &[0; 16], 8);
    let v = mangle("t::V", 3);
    cell.define(&v, tdata, 8, 8, SymbolKind::Tls);
    let t = system
        .load(ns, CellSpec::named("t"), &cell.bytes())
        .unwrap();
    let module = system.registry().cell(t).unwrap().tls_module.unwrap();
    match system.resolver().resolve(ns, &v, true) {
        Resolution::Found(r) => assert_eq!(r.tls, Some(TlsSymbol { module, offset: 8 })),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        system.resolver().resolve(ns, &v, false),
        Resolution::TlsMismatch
    );
    system.load(ns, CellSpec::named("p"), &provider()).unwrap();
    assert_eq!(
        system.resolver().resolve(ns, &p_f(), true),
        Resolution::TlsMismatch
    );
}

struct Manifest;

impl Catalog for Manifest {
    fn defined_by(&self, symbol: &str) -> Option<String> {
        symbol.contains("3dep").then(|| "dep 1.0.0".into())
    }
}

/// Loads a cell whose data word needs `wanted`, and returns the error.
fn missing(platform: HeapPlatform, wanted: &str, catalog: bool) -> LoadError {
    let (mut system, ns) = system_on(platform);
    if catalog {
        system.set_catalog(Arc::new(Manifest));
    }
    let mut cell = Cell::new();
    let data = cell.section(".data.m", Kind::Data, &[0; 8], 8);
    let s = cell.undefined(wanted, SymbolKind::Text, false);
    cell.reloc(data, 0, s, R_64, 0);
    system
        .load(ns, CellSpec::named("m"), &cell.bytes())
        .unwrap_err()
}

#[test]
fn a_missing_symbol_is_explained() {
    // The base image has the same path under another crate hash: another crate identity.
    let mut platform = HeapPlatform::default();
    platform.image.insert(mangle("a::x", 2), 0x1000);
    let wanted = mangle("a::x", 1);
    match missing(platform, &wanted, false) {
        LoadError::UndefinedSymbols { missing, cause, .. } => {
            assert_eq!(missing[0].mangled, wanted);
            assert_eq!(missing[0].other_hash, Some(mangle("a::x", 2)));
            assert_eq!(cause, Some(MissingCause::CrateIdentity));
        }
        other => panic!("{other}"),
    }
    // The toolchain's own crates (v0-mangled) under another hash: another rustc.
    let mut platform = HeapPlatform::default();
    platform.image.insert("_RNvCs1234_4core3foo".into(), 0x1000);
    let err = missing(platform, "_RNvCs5678_4core3foo", false);
    match &err {
        LoadError::UndefinedSymbols { cause, .. } => {
            assert_eq!(*cause, Some(MissingCause::Toolchain), "{err}")
        }
        other => panic!("{other}"),
    }
    // A crate the catalog knows but that is not loaded.
    match missing(HeapPlatform::default(), &mangle("dep::y", 1), true) {
        LoadError::UndefinedSymbols { missing, cause, .. } => {
            assert_eq!(missing[0].defined_by.as_deref(), Some("dep 1.0.0"));
            assert_eq!(cause, Some(MissingCause::NotLoaded));
        }
        other => panic!("{other}"),
    }
}
