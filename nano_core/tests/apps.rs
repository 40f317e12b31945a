//! Applications in their own namespaces: shadowing, isolation, fault containment, teardown.

mod common;

use std::sync::Mutex;

use crate_metadata::{CellKind, NamespaceId};
use loader::hosted::Hosted;
use loader::{CellSpec, Handle, LoadError, SwapOptions, System, UnloadError};
use nano_core::apps::Outcome;
use nano_core::Kernel;

static SERIAL: Mutex<()> = Mutex::new(());

fn boot() -> Kernel {
    nano_core::logger::install(log::LevelFilter::Off);
    Kernel::boot(common::cells_dir()).unwrap_or_else(|e| panic!("boot failed: {e:#}"))
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The `output` of the application `app` (hello or hola) in the namespace `ns`.
fn output_of(kernel: &mut Kernel, ns: NamespaceId, app: &str) -> Handle<cell_abi::hello::Output> {
    match app {
        "hello" => kernel.bind_in(ns, cell_abi::hello::OUTPUT),
        "hola" => kernel.bind_in(ns, cell_abi::hola::OUTPUT),
        other => panic!("no output in {other}"),
    }
    .unwrap()
}

#[test]
fn two_applications_use_two_versions_of_one_library_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let kernel_greeted = kernel.bind(cell_abi::greet::GREETED).unwrap();
    let before = (kernel_greeted.get())();
    let hello = kernel.start_app("hello").unwrap();
    let hola = kernel.start_app("hola").unwrap();
    assert_eq!(kernel.apps().len(), 2, "both namespaces exist at once");
    kernel.spawn_app(hello, args(&["ada", "alan"])).unwrap();
    kernel.spawn_app(hola, args(&["grace"])).unwrap();
    assert_eq!(kernel.wait_app(hello).unwrap(), Outcome::Exited(0));
    assert_eq!(kernel.wait_app(hola).unwrap(), Outcome::Exited(0));
    let output = |k: &mut Kernel, id: u64, app: &str| {
        let ns = k.app_namespace(id).unwrap();
        let h = output_of(k, ns, app);
        (h.get())()
    };
    assert_eq!(
        output(&mut kernel, hello, "hello"),
        ["Hello, ada!", "Hello, alan!"]
    );
    assert_eq!(
        output(&mut kernel, hola, "hola"),
        ["¡Hola, grace! (greet v2)"]
    );
    // hola's greet is its own: the kernel's counted only hello's two greetings.
    assert_eq!((kernel_greeted.get())(), before + 2);
    let ns = kernel.app_namespace(hola).unwrap();
    let names: Vec<String> = kernel
        .namespaces()
        .get(ns)
        .unwrap()
        .cells
        .iter()
        .map(|c| kernel.system().registry().cell(*c).unwrap().name.clone())
        .collect();
    assert_eq!(names, ["greet", "hola"], "hola brought its own greet");
    assert_eq!(kernel.end_app(hello).unwrap(), 1);
    assert_eq!(kernel.end_app(hola).unwrap(), 2);
    assert!(kernel.apps().is_empty());
    assert_eq!(
        kernel.namespaces().iter().count(),
        1,
        "only _kernel is left"
    );
}

#[test]
fn nothing_outside_an_application_can_bind_to_its_cells() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut system = System::new(Hosted::new().unwrap(), "nano_core");
    let kernel = system.create_namespace("_kernel", None).unwrap();
    let app = system.create_namespace("app:x#1", Some(kernel)).unwrap();
    let other = system.create_namespace("app:y#2", Some(kernel)).unwrap();
    let greet = common::object(CellKind::Libs, "greet");
    system.load(app, CellSpec::named("greet"), &greet).unwrap();
    let hello = common::object(CellKind::Apps, "hello");
    for ns in [kernel, other] {
        let err = system
            .load(ns, CellSpec::named("hello"), &hello)
            .unwrap_err();
        let LoadError::UndefinedSymbols { missing, .. } = &err else {
            panic!("wrong error: {err}")
        };
        let greeting = missing
            .iter()
            .find(|m| m.demangled.starts_with("greet::greeting"))
            .unwrap();
        assert_eq!(greeting.hidden_in.as_deref(), Some("app:x#1"), "{err}");
        assert!(
            err.to_string().contains("defined in namespace `app:x#1`"),
            "{err}"
        );
    }
    // The host cannot reach it from the kernel's namespace either.
    let err = system.bind(kernel, cell_abi::greet::GREETING).unwrap_err();
    assert!(
        matches!(err, LoadError::NoSuchSymbol { ref namespace, .. } if namespace == "_kernel"),
        "{err}"
    );
    // But from inside, it can.
    system.load(app, CellSpec::named("hello"), &hello).unwrap();
}

#[test]
fn a_panicking_application_takes_nothing_else_down() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let hello = kernel.start_app("hello").unwrap();
    kernel.spawn_app(hello, args(&["still", "here"])).unwrap();
    let crashed = kernel.run_app("crasher", &args(&["bob"]));
    std::panic::set_hook(hook);
    match crashed.unwrap() {
        Outcome::Panicked(msg) => assert!(
            msg.contains("deliberately panicking after `Hello, bob!`"),
            "{msg}"
        ),
        other => panic!("crasher did not panic: {other:?}"),
    }
    assert!(
        kernel
            .namespaces()
            .iter()
            .all(|n| !n.name.starts_with("app:crasher")),
        "its namespace is gone"
    );
    assert_eq!(
        kernel.wait_app(hello).unwrap(),
        Outcome::Exited(0),
        "the other application ran on"
    );
    kernel.end_app(hello).unwrap();
    // The kernel's cells work.
    let read = kernel.bind(cell_abi::memfs::READ).unwrap();
    assert!((read.get())("/etc/motd").is_ok());
    assert_eq!(
        kernel.run_app("hello", &args(&["again"])).unwrap(),
        Outcome::Exited(0)
    );
}

#[test]
fn teardown_frees_everything_and_refuses_while_used_from_outside() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let before = kernel.system().platform().live_mappings();
    let cells_before = kernel.system().registry().cells().count();
    let id = kernel.start_app("hola").unwrap();
    let ns = kernel.app_namespace(id).unwrap();
    assert!(kernel.system().platform().live_mappings().0 > before.0);
    // A handle the host keeps into the application is a user outside its namespace.
    let kept = output_of(&mut kernel, ns, "hola");
    let err = kernel.end_app(id).unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<UnloadError>(),
            Some(UnloadError::NamespaceInUse { cell, dependents, .. })
                if cell == "hola" && dependents.iter().any(|d| d == "nano_core")
        ),
        "{err:#}"
    );
    drop(kept);
    // `end_app` consumed the application; tear the namespace down directly now.
    kernel.system_mut().remove_namespace(ns).unwrap();
    assert_eq!(
        kernel.system().platform().live_mappings(),
        before,
        "every mapping is gone"
    );
    assert_eq!(kernel.system().registry().cells().count(), cells_before);
    assert!(kernel.namespaces().get(ns).is_none());
}

#[test]
fn swapping_a_kernel_library_moves_the_applications_that_use_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot();
    let hello = kernel.start_app("hello").unwrap();
    let hola = kernel.start_app("hola").unwrap();
    let v2 = common::object(CellKind::Upgrades, "greet");
    let report = kernel
        .swap_bytes("greet", &v2, &SwapOptions::default())
        .unwrap();
    assert!(
        report.dependents.iter().any(|d| d == "hello"),
        "{:?}",
        report.dependents
    );
    assert_eq!(
        kernel.call_app(hello, &args(&["ada"])).unwrap(),
        Outcome::Exited(0)
    );
    let ns = kernel.app_namespace(hello).unwrap();
    let out = output_of(&mut kernel, ns, "hello");
    assert_eq!(
        (out.get())(),
        ["¡Hola, ada! (greet v2)"],
        "hello now calls the kernel's new greet"
    );
    drop(out);
    kernel.end_app(hello).unwrap();
    kernel.end_app(hola).unwrap();
}
