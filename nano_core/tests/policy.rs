//! Export policies and safe applications on the real cells: an application binds only to what
//! the kernel's cells export to applications, an application object without the build's safety
//! claim runs only when a key trusted for unsafe applications signed it, and a swap may not take
//! away an export an application binds to, nor a new version of an application bind to what the
//! kernel does not export. Every refusal leaves the system as it was. The unsafe applications here
//! are real objects compiled by hand with `rustc` (the workspace's profile, without the build's
//! `-F unsafe_code`), as someone bypassing `cargo cell build` would make them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use build_tools::sign;
use crate_metadata::{
    demangle, AppInterface, CellKind, Manifest, ManifestEntry, Refusal, Registry,
};
use loader::{CellSpec, LoadError, NewVersion, PolicyError, SwapError, SwapOptions, SwapRequest};
use nano_core::apps::Outcome;
use nano_core::Kernel;

static SERIAL: Mutex<()> = Mutex::new(());

/// A private copy of `target/cells` whose manifest `edit` changed.
struct Cells(PathBuf);

impl Cells {
    fn edited(tag: &str, edit: impl FnOnce(&mut Manifest)) -> Cells {
        let dir = std::env::temp_dir().join(format!("cells-policy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(common::cells_dir(), &dir);
        let path = dir.join("manifest.json");
        let mut manifest: Manifest =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut manifest);
        std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
        Cells(dir)
    }
}

impl Cells {
    /// Changes the manifest as it is now (signed or not).
    fn edit(&self, edit: impl FnOnce(&mut Manifest)) {
        let path = self.0.join("manifest.json");
        let mut manifest: Manifest =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut manifest);
        std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    }

    /// Puts `object` in place of application `app`'s object and changes its entry with `edit`.
    fn replace_app(&self, app: &str, object: &[u8], edit: impl FnOnce(&mut ManifestEntry)) {
        self.edit(|m| {
            let entry = m.get_mut(CellKind::Apps, app).unwrap();
            std::fs::write(self.0.join(&entry.object), object).unwrap();
            edit(entry);
        });
    }
}

impl Drop for Cells {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else if path.extension().is_some_and(|e| e == "o" || e == "json") {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

fn boot(dir: &Path) -> Kernel {
    nano_core::logger::install(log::LevelFilter::Off);
    Kernel::boot(dir).unwrap_or_else(|e| panic!("boot failed: {e:#}"))
}

/// What a refused start must leave as it was: the cells, the namespaces, and the value of every
/// slot of a cell (the host's handle slots come and go with the logger's handles).
fn state(k: &Kernel) -> (usize, usize, Vec<(u64, u64)>) {
    let registry = k.system().registry();
    let cell_slots: std::collections::BTreeSet<u64> = registry
        .edges()
        .filter(|(_, e)| e.dependent != Registry::BASE)
        .map(|(_, e)| e.slot)
        .collect();
    (
        registry.cells().count(),
        k.namespaces().iter().count(),
        k.system()
            .slot_values()
            .into_iter()
            .filter(|(slot, _)| cell_slots.contains(slot))
            .collect(),
    )
}

fn policy_error(e: &anyhow::Error) -> &PolicyError {
    match e.downcast_ref::<LoadError>() {
        Some(LoadError::Policy(p)) => p.as_ref(),
        _ => panic!("not a policy refusal: {e:#}"),
    }
}

#[test]
fn the_manifest_records_interfaces_grants_and_safe_applications() {
    let manifest = common::manifest();
    for app in ["banner", "crasher", "hello", "hola", "sleeper"] {
        let entry = manifest.get(CellKind::Apps, app).unwrap();
        assert!(
            entry.unsafe_forbidden,
            "{app} was built with unsafe forbidden"
        );
    }
    let greet = manifest.get(CellKind::Libs, "greet").unwrap();
    assert!(greet
        .app_interface
        .as_ref()
        .is_some_and(|i| i.items.contains(&"greet::greeting".to_string())));
    let hola = manifest.get(CellKind::Apps, "hola").unwrap();
    assert_eq!(hola.grants, ["greet"]);
}

#[test]
fn an_application_binding_to_a_symbol_the_kernel_does_not_export_is_refused_by_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The kernel's `greet` exports applications only `greet::revision`: `hello` binds to
    // `greet::greeting`.
    let cells = Cells::edited("refused", |m| {
        let greet = m.get_mut(CellKind::Libs, "greet").unwrap();
        greet.app_interface = Some(AppInterface::new(["greet::revision".to_string()]));
    });
    let mut kernel = boot(&cells.0);
    let before = state(&kernel);
    let err = kernel.start_app("hello").unwrap_err();
    let PolicyError::Refused {
        cell,
        namespace,
        bindings,
    } = policy_error(&err)
    else {
        panic!("{err:#}");
    };
    assert_eq!(cell, "hello");
    assert!(namespace.starts_with("app:hello"), "{namespace}");
    assert_eq!(bindings.len(), 1, "{err:#}");
    assert!(bindings[0].symbol.starts_with("greet::greeting::h"));
    assert_eq!(bindings[0].provider, "greet");
    assert_eq!(bindings[0].refusal, Refusal::NotInInterface { declared: 1 });
    assert_eq!(state(&kernel), before, "nothing was mapped or changed");
    // `hola` brings its own `greet` and its namespace grants it: it still runs.
    let hola = kernel.start_app("hola").unwrap();
    kernel.spawn_app(hola, vec!["ada".into()]).unwrap();
    assert_eq!(kernel.wait_app(hola).unwrap(), Outcome::Exited(0));
}

#[test]
fn an_application_without_the_safety_claim_runs_only_when_a_trusted_key_signed_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // What a build by hand (plain `cargo build`, no `-F unsafe_code`) gives: no claim.
    let cells = Cells::edited("unsafe", |m| {
        for e in m.cells.iter_mut().filter(|e| e.kind == CellKind::Apps) {
            e.unsafe_forbidden = false;
        }
    });
    let mut kernel = boot(&cells.0);
    let before = state(&kernel);
    let err = kernel.start_app("hello").unwrap_err();
    assert_eq!(
        policy_error(&err),
        &PolicyError::UnsafeApplication {
            cell: "hello".into()
        }
    );
    assert_eq!(state(&kernel), before);
    drop(kernel);

    // Signed with a key the kernel trusts for unsafe applications: it runs.
    let keys = cells.0.join("keys");
    sign::keygen(&keys).unwrap();
    sign::sign_manifest(&cells.0, &keys.join("cell-signing.key")).unwrap();
    let public = sign::read_key(&keys.join("cell-signing.pub")).unwrap();
    let mut kernel = Kernel::boot_trusting(&cells.0, &[public]).unwrap();
    let err = kernel.start_app("hello").unwrap_err();
    assert!(
        matches!(policy_error(&err), PolicyError::UnsafeApplication { .. }),
        "a key trusted for cells is not one trusted for unsafe applications"
    );
    kernel.trust_unsafe_apps(&[public]).unwrap();
    let hello = kernel.start_app("hello").unwrap();
    kernel.spawn_app(hello, vec!["ada".into()]).unwrap();
    assert_eq!(kernel.wait_app(hello).unwrap(), Outcome::Exited(0));
}

#[test]
fn a_kernel_swap_that_removes_an_export_an_application_uses_is_refused_naming_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The new `greet` (cells/upgrades) offers applications only `greet::revision`.
    let cells = Cells::edited("swap", |m| {
        let greet = m.get_mut(CellKind::Upgrades, "greet").unwrap();
        greet.app_interface = Some(AppInterface::new(["greet::revision".to_string()]));
    });
    let mut kernel = boot(&cells.0);
    let hello = kernel.start_app("hello").unwrap();
    let object = kernel.default_swap_object("greet").unwrap();
    let before = state(&kernel);
    let err = kernel
        .swap_cell("greet", &object, &SwapOptions::default())
        .unwrap_err();
    let Some(SwapError::Policy(policy)) = err.downcast_ref::<SwapError>() else {
        panic!("{err:#}");
    };
    let PolicyError::InterfaceNarrowed {
        cell, app, symbol, ..
    } = policy.as_ref()
    else {
        panic!("{err:#}");
    };
    assert_eq!((cell.as_str(), app.as_str()), ("greet", "hello"));
    assert!(symbol.starts_with("greet::greeting::h"), "{symbol}");
    assert_eq!(state(&kernel), before, "the swap changed nothing");
    // The application still runs on the old version.
    kernel.spawn_app(hello, vec!["ada".into()]).unwrap();
    assert_eq!(kernel.wait_app(hello).unwrap(), Outcome::Exited(0));
}

#[test]
fn the_existing_applications_run_under_the_policies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut kernel = boot(common::cells_dir());
    for (app, args, expect) in [
        ("hello", vec!["ada"], Outcome::Exited(0)),
        ("hola", vec!["ada"], Outcome::Exited(0)),
        ("banner", vec!["ada"], Outcome::Exited(0)),
        ("sleeper", vec!["1"], Outcome::Exited(0)),
    ] {
        let id = kernel
            .start_app(app)
            .unwrap_or_else(|e| panic!("{app}: {e:#}"));
        let args = args.into_iter().map(String::from).collect();
        kernel.spawn_app(id, args).unwrap();
        assert_eq!(kernel.wait_app(id).unwrap(), expect, "{app}");
        kernel.end_app(id).unwrap();
    }
    let crasher = kernel.start_app("crasher").unwrap();
    kernel.spawn_app(crasher, vec![]).unwrap();
    assert!(matches!(
        kernel.wait_app(crasher).unwrap(),
        Outcome::Panicked(_)
    ));
}

/// Compiles `source` as the crate `name` with the workspace's `dev` profile but without
/// `cargo cell build`'s `-F unsafe_code`: the relocatable object a build by hand gives.
fn compile_by_hand(name: &str, source: &str, dir: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join(format!("{name}.rs"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(format!("{name}.o"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "rlib",
            "--crate-name",
            name,
        ])
        .args([
            "--emit",
            "obj",
            "-C",
            "opt-level=3",
            "-C",
            "codegen-units=1",
        ])
        .args([
            "-C",
            "panic=unwind",
            "-C",
            "debuginfo=0",
            "-C",
            "debug-assertions=off",
        ])
        .args(["-C", "overflow-checks=off", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rustc: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).unwrap()
}

/// A `hello` whose own code uses `unsafe`: it writes through a raw pointer and returns
/// `40 + args.len()`, so a run shows which object ran.
const UNSAFE_HELLO: &str = "
#[inline(never)]
pub fn main(args: &[String]) -> i32 {
    let mut code = 0i32;
    let p: *mut i32 = &mut code;
    unsafe { p.write_volatile(40 + args.len() as i32) };
    code
}
";

/// The message of a start refused because of a signature.
fn signature_refused(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("signature does not verify")
}

#[test]
fn a_hand_built_application_using_unsafe_runs_only_when_signed_by_a_key_trusted_for_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cells = Cells::edited("hand-built", |_| {});
    let object = compile_by_hand("hello", UNSAFE_HELLO, &cells.0.join("by-hand"));
    let sha = loader::sha256(&object);
    let original = common::manifest()
        .get(CellKind::Apps, "hello")
        .unwrap()
        .clone();

    // In place of `hello`, its entry copied from the real one, safety claim included: the claim
    // is about the real object's bytes, and these are not them. (Only the size, which bounds
    // the read, is the new object's.)
    cells.replace_app("hello", &object, |e| e.size = object.len() as u64);
    let mut kernel = boot(&cells.0);
    let before = state(&kernel);
    let err = kernel.start_app("hello").unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<LoadError>(),
            Some(LoadError::IntegrityMismatch { cell, actual, .. }) if cell == "hello" && *actual == sha
        ),
        "{err:#}"
    );
    assert_eq!(state(&kernel), before);
    drop(kernel);

    // Its entry made true (its hash and size) and claiming nothing: refused as unsafe.
    cells.replace_app("hello", &object, |e| {
        e.sha256 = sha;
        e.size = object.len() as u64;
        e.unsafe_forbidden = false;
    });
    let mut kernel = boot(&cells.0);
    let before = state(&kernel);
    let err = kernel.start_app("hello").unwrap_err();
    assert_eq!(
        policy_error(&err),
        &PolicyError::UnsafeApplication {
            cell: "hello".into()
        }
    );
    assert_eq!(state(&kernel), before, "nothing was mapped or changed");
    drop(kernel);

    // Signed: the real `hello`'s signed entry, claim and signature copied, with only the hash and
    // size made those of the hand-built object. The signature covers the hash: refused.
    let keys = cells.0.join("keys");
    sign::keygen(&keys).unwrap();
    let secret = keys.join("cell-signing.key");
    let public = sign::read_key(&keys.join("cell-signing.pub")).unwrap();
    cells.replace_app("hello", &common::object(CellKind::Apps, "hello"), |e| {
        *e = original.clone();
    });
    sign::sign_manifest(&cells.0, &secret).unwrap();
    cells.replace_app("hello", &object, |e| {
        assert!(e.unsafe_forbidden && e.signature.is_some());
        e.sha256 = sha;
        e.size = object.len() as u64;
    });
    let mut kernel = Kernel::boot_trusting(&cells.0, &[public]).unwrap();
    let err = kernel.start_app("hello").unwrap_err();
    assert!(signature_refused(&err), "{err:#}");
    drop(kernel);

    // Signed as what it is (no claim): a key trusted for cells is not one trusted for unsafe
    // applications; trusted for them too, it runs, and it is the hand-built object that runs.
    cells.edit(|m| {
        let hello = m.get_mut(CellKind::Apps, "hello").unwrap();
        hello.unsafe_forbidden = false;
    });
    sign::sign_manifest(&cells.0, &secret).unwrap();
    let mut kernel = Kernel::boot_trusting(&cells.0, &[public]).unwrap();
    let err = kernel.start_app("hello").unwrap_err();
    assert!(
        matches!(policy_error(&err), PolicyError::UnsafeApplication { .. }),
        "{err:#}"
    );
    kernel.trust_unsafe_apps(&[public]).unwrap();
    let hello = kernel.start_app("hello").unwrap();
    kernel.spawn_app(hello, vec!["ada".into()]).unwrap();
    assert_eq!(kernel.wait_app(hello).unwrap(), Outcome::Exited(41));
    drop(kernel);

    // The claim added to that signed entry afterwards: the signature covers it, refused even
    // where the key is trusted for cells only.
    cells.edit(|m| {
        let hello = m.get_mut(CellKind::Apps, "hello").unwrap();
        hello.unsafe_forbidden = true;
    });
    let mut kernel = Kernel::boot_trusting(&cells.0, &[public]).unwrap();
    let err = kernel.start_app("hello").unwrap_err();
    assert!(signature_refused(&err), "{err:#}");
}

#[test]
fn a_new_version_of_an_application_binding_to_what_the_kernel_does_not_export_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cells = Cells::edited("app-swap", |_| {});
    let manifest = common::manifest();
    // `greet::GREETED` is not in the kernel `greet`'s application interface.
    let greeted = manifest
        .get(CellKind::Libs, "greet")
        .unwrap()
        .exports
        .iter()
        .find(|s| demangle::path(s) == "greet::GREETED")
        .expect("greet exports GREETED")
        .clone();
    let source = format!(
        "extern \"Rust\" {{\n    #[link_name = \"{greeted}\"]\n    \
         static GREETED: core::sync::atomic::AtomicU64;\n}}\n\
         #[inline(never)]\npub fn main(_args: &[String]) -> i32 {{\n    \
         unsafe {{ GREETED.load(core::sync::atomic::Ordering::Relaxed) as i32 }}\n}}\n"
    );
    let object = compile_by_hand("hello", &source, &cells.0.join("by-hand"));
    let sha = loader::sha256(&object);
    let version = manifest
        .get(CellKind::Apps, "hello")
        .unwrap()
        .version
        .clone();

    let mut kernel = boot(&cells.0);
    let hello = kernel.start_app("hello").unwrap();
    let ns = kernel.namespaces().by_name("app:hello#1").unwrap().id;
    let old = kernel.system().cell_in(ns, "hello").unwrap();
    // Vouched for, so that what is refused is what it binds to.
    kernel.system_mut().admit_application(sha);
    let before = state(&kernel);
    let err = kernel
        .system_mut()
        .swap(
            &[SwapRequest {
                old,
                new: NewVersion::Object {
                    spec: CellSpec {
                        name: "hello",
                        version: &version,
                        kind: Some(CellKind::Upgrades),
                        sha256: Some(sha),
                    },
                    bytes: &object,
                },
            }],
            &SwapOptions::default(),
        )
        .unwrap_err();
    let SwapError::Stage(LoadError::Policy(policy)) = &err else {
        panic!("{err}");
    };
    let PolicyError::Refused {
        cell,
        namespace,
        bindings,
    } = policy.as_ref()
    else {
        panic!("{err}");
    };
    assert_eq!(
        (cell.as_str(), namespace.as_str()),
        ("hello", "app:hello#1")
    );
    assert_eq!(bindings.len(), 1, "{err}");
    assert!(bindings[0].symbol.starts_with("greet::GREETED::h"), "{err}");
    assert_eq!(bindings[0].provider, "greet");
    assert!(matches!(
        bindings[0].refusal,
        Refusal::NotInInterface { .. }
    ));
    assert_eq!(state(&kernel), before, "the swap changed nothing");
    // The running version is still the one that runs.
    kernel.spawn_app(hello, vec!["ada".into()]).unwrap();
    assert_eq!(kernel.wait_app(hello).unwrap(), Outcome::Exited(0));
}
