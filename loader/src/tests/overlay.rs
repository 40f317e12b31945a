//! `overlay.rs`: a platform that is the heap platform with one method changed answers that method
//! from its layer and every other from the heap platform, the trait defaults the heap platform
//! overrides included (a hand-written forwarder that missed one got the default instead).

use crate::overlay::{Layer, Overlay};
use crate::platform::{
    Memory, PlatformError, Process, SymbolSource, ThreadLocals, TlsTemplate, Unwinder,
};
use crate::testing::cells::provider;
use crate::testing::{HeapPlatform, PAGE};
use crate::{CellSpec, LoadError, System};

/// Refuses every mapping; changes nothing else.
struct NoMemory;

impl Layer<HeapPlatform> for NoMemory {
    fn map(&self, _inner: &HeapPlatform, len: usize) -> Result<*mut u8, PlatformError> {
        Err(PlatformError::OutOfMemory { len })
    }
}

fn overlay() -> Overlay<HeapPlatform, NoMemory> {
    let mut inner = HeapPlatform::default();
    inner.image.insert("base".into(), 0x1234);
    inner.platform.insert("memcpy".into(), 0x5678);
    Overlay::new(inner, NoMemory)
}

#[test]
fn an_overlay_answers_from_its_layer_only_what_the_layer_changes() {
    let o = overlay();
    assert_eq!(o.map(PAGE), Err(PlatformError::OutOfMemory { len: PAGE }));
    assert_eq!(o.inner().live(), (0, 0));
    // Everything else is the heap platform's.
    assert_eq!(o.page_size(), PAGE);
    assert_eq!(o.image_symbol("base"), Some(0x1234));
    assert_eq!(o.platform_symbol("memcpy"), Some(0x5678));
    assert_eq!(o.tls_get_addr(), 0x7e57_0000);
    // Methods whose trait default the heap platform overrides: its clock (the default is 0), it
    // runs no code (the default runs it), it has debuggers (the default has none).
    assert_eq!((o.now_nanos(), o.now_nanos()), (0, 1));
    assert!(!o.runs_code());
    assert!(o.debuggers().is_some());
    // SAFETY: the heap platform only records the pointer; nothing reads it.
    unsafe { o.register(0x1000 as *const u8) }.unwrap();
    assert_eq!(o.inner().eh_frames(), 1);
    // SAFETY: registered just above.
    unsafe { o.deregister(0x1000 as *const u8) };
    assert_eq!(o.inner().eh_frames(), 0);
    let template = TlsTemplate {
        init: core::ptr::null(),
        init_len: 0,
        size: 8,
        align: 8,
    };
    // SAFETY: the heap platform only counts modules; it never reads the template.
    let module = unsafe { o.create_module(template) }.unwrap();
    assert_eq!(o.inner().modules(), 1);
    // SAFETY: no code of the module's (nonexistent) cell runs.
    unsafe { o.destroy_module(module) };
    assert_eq!(o.inner().modules(), 0);
}

#[test]
fn a_load_on_an_overlay_goes_through_its_layer() {
    let mut system = System::new(overlay(), "base");
    let ns = system.create_namespace("_kernel", None).unwrap();
    let before = system.registry().clone();
    let err = system
        .load(ns, CellSpec::named("p"), &provider())
        .unwrap_err();
    assert!(
        matches!(
            err,
            LoadError::Platform {
                error: PlatformError::OutOfMemory { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(system.platform().inner().live(), (0, 0));
    assert!(
        system.registry() == &before,
        "the failed load left a cell behind"
    );
}
