//! Applications: each run gets its own namespace on top of `_kernel`.
//!
//! An application is a cell under `cells/apps/` with the entry point
//!
//! ```rust,ignore
//! #[inline(never)]
//! pub fn main(args: &[String]) -> i32
//! ```
//!
//! Starting one creates the namespace `app:<name>#<n>` whose parent is `_kernel`, loads into it the
//! library cells the application brings its own version of (`[package.metadata.cell] brings`,
//! taken from `cells/upgrades`), then the application itself. Its symbols resolve in its own
//! namespace first, so a library it brings shadows the kernel's for it alone; nothing outside can
//! see its cells. A panic in `main` unwinds to the entry point and ends that run only. Ending an
//! application tears its namespace down: its cells are unmapped, their unwind information
//! deregistered, their TLS blocks freed and their symbols removed.

use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, bail, Context, Result};
use crate_metadata::{CellKind, NamespaceId};
use loader::Handle;

use crate::app_table::App;
pub use crate::app_table::{AppInfo, AppState, Apps, LaunchOptions, MainFn, Outcome};
use crate::kernel::Kernel;
use crate::panic::panic_message;

fn call_main(main: &Handle<MainFn>, args: &[String]) -> Outcome {
    let f = main.get();
    match catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(code) => Outcome::Exited(code),
        Err(payload) => Outcome::Panicked(panic_message(&*payload)),
    }
}

impl Kernel {
    /// Loads application `name` (and the libraries it brings) into a fresh namespace under
    /// `_kernel`. Nothing runs yet.
    pub fn start_app(&mut self, name: &str) -> Result<u64> {
        let manifest = self.manifest().clone();
        let entry = manifest
            .get(CellKind::Apps, name)
            .with_context(|| format!("no application `{name}` in the manifest (cells/apps)"))?;
        let id = self.apps.next + 1;
        let ns_name = format!("app:{name}#{id}");
        let kernel_ns = self.kernel_namespace();
        let ns = self
            .system_mut()
            .create_namespace(&ns_name, Some(kernel_ns))?;
        self.confine_app(ns, entry);
        let loaded = (|| -> Result<Handle<MainFn>> {
            for lib in &entry.brings {
                let own = manifest.get(CellKind::Upgrades, lib).with_context(|| {
                    format!("`{name}` brings its own `{lib}`, but cells/upgrades has none")
                })?;
                self.load_dependencies(ns, own)?;
                self.load_entry(ns, own)?;
            }
            // Dependency cells the kernel does not have (another release of a crate, say) go
            // into the application's namespace, and go with it.
            self.load_dependencies(ns, entry)?;
            self.load_entry(ns, entry)?;
            self.system_mut()
                .bind(ns, cell_abi::MAIN.of(name))
                .with_context(|| format!("application `{name}`"))
        })();
        let main = match loaded {
            Ok(main) => main,
            Err(e) => {
                let _ = self.system_mut().remove_namespace(ns);
                return Err(e);
            }
        };
        self.apps.next = id;
        self.apps.list.push(App {
            id,
            name: name.into(),
            namespace: ns,
            namespace_name: ns_name,
            main,
            running: None,
        });
        Ok(id)
    }

    fn app(&mut self, id: u64) -> Result<&mut App> {
        self.apps
            .list
            .iter_mut()
            .find(|a| a.id == id)
            .with_context(|| format!("no running application #{id}"))
    }

    /// Runs a started application's `main` on this thread; a panic is caught at the entry point.
    pub fn call_app(&mut self, id: u64, args: &[String]) -> Result<Outcome> {
        let app = self.app(id)?;
        if app.running.is_some() {
            bail!("application #{id} is running on its own thread");
        }
        Ok(call_main(&app.main, args))
    }

    /// Runs a started application's `main` on a thread of its own.
    pub fn spawn_app(&mut self, id: u64, args: Vec<String>) -> Result<()> {
        self.spawn_app_with(id, args, &LaunchOptions::default())
    }

    /// [`Kernel::spawn_app`] with the thread's options.
    pub fn spawn_app_with(
        &mut self,
        id: u64,
        args: Vec<String>,
        options: &LaunchOptions,
    ) -> Result<()> {
        let app = self.app(id)?;
        if app.running.is_some() {
            bail!("application #{id} is already running");
        }
        let main = app.main.clone();
        let epochs = self.system.epochs().clone();
        let app = self.app(id)?;
        let mut builder = std::thread::Builder::new().name(app.namespace_name.clone());
        if let Some(size) = options.stack_size {
            builder = builder.stack_size(size);
        }
        let thread = builder
            .spawn(move || {
                crate::faults::prepare_thread();
                // Registered for grace periods from before `main` until the thread ends: a
                // retired version it may be running is not freed under it (reclaim.rs).
                let _registered = epochs.register();
                call_main(&main, &args)
            })
            .with_context(|| format!("spawning the thread of application #{id}"))?;
        app.running = Some(thread);
        Ok(())
    }

    /// Starts application `name` and runs its `main` on a thread of its own: `run` at the prompt
    /// and on the control channel. When the thread cannot be spawned, the application is ended
    /// again (its namespace torn down), so nothing of it stays loaded.
    pub fn launch_app(
        &mut self,
        name: &str,
        args: Vec<String>,
        options: &LaunchOptions,
    ) -> Result<u64> {
        let id = self.start_app(name)?;
        if let Err(e) = self.spawn_app_with(id, args, options) {
            return match self.end_app(id) {
                Ok(_) => Err(e.context(format!("`{name}` did not run; its namespace is gone"))),
                Err(end) => Err(e.context(format!(
                    "`{name}` did not run, and ending it failed too: {end:#}"
                ))),
            };
        }
        Ok(id)
    }

    /// Waits as [`Kernel::wait_app`] does, but at most `deadline`: an application still running
    /// then is refused (a thread cannot be stopped from outside; it keeps running and can be
    /// waited for again) instead of freezing the caller.
    pub fn wait_app_within(&mut self, id: u64, deadline: std::time::Duration) -> Result<Outcome> {
        let start = std::time::Instant::now();
        loop {
            let app = self.app(id)?;
            match &app.running {
                Some(thread) if !thread.is_finished() => {
                    if start.elapsed() >= deadline {
                        bail!(
                            "application #{id} `{}` is still running after {:.1} s: not ended \
                             (it keeps running; end it again later)",
                            app.name,
                            deadline.as_secs_f64()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => return self.wait_app(id),
            }
        }
    }

    /// Waits for an application spawned with [`Kernel::spawn_app`] and returns how it ended.
    pub fn wait_app(&mut self, id: u64) -> Result<Outcome> {
        let app = self.app(id)?;
        let thread = app
            .running
            .take()
            .with_context(|| format!("application #{id} is not running"))?;
        thread
            .join()
            .map_err(|_| anyhow!("application #{id}'s thread died outside its entry point"))
    }

    /// Ends an application: waits for its thread if it has one, then tears its namespace down.
    /// Returns how many cells were unloaded.
    pub fn end_app(&mut self, id: u64) -> Result<usize> {
        if self.app(id)?.running.is_some() {
            self.wait_app(id)?;
        }
        let pos = self
            .apps
            .list
            .iter()
            .position(|a| a.id == id)
            .with_context(|| format!("no running application #{id}"))?;
        let app = self.apps.list.remove(pos);
        let ns = app.namespace;
        let name = app.name.clone();
        drop(app); // its handle: the namespace's cells must have no user left
                   // The deinit convention: a cell about to be unloaded may release what its statics
                   // hold (statics are never dropped; their heap memory would be lost with the cell).
        if let Ok(deinit) = self.system_mut().bind(ns, cell_abi::DEINIT.of(&name)) {
            (deinit.get())();
        }
        self.system_mut()
            .remove_namespace(ns)
            .map_err(anyhow::Error::new)
    }

    /// Starts, runs and ends application `name`: its namespace is gone afterwards, whether `main`
    /// returned or panicked.
    pub fn run_app(&mut self, name: &str, args: &[String]) -> Result<Outcome> {
        let id = self.start_app(name)?;
        let outcome = self.call_app(id, args);
        let ended = self.end_app(id);
        let outcome = outcome?;
        ended?;
        Ok(outcome)
    }

    /// The applications started and not ended.
    pub fn apps(&self) -> Vec<AppInfo> {
        self.apps
            .list
            .iter()
            .map(|a| AppInfo {
                id: a.id,
                name: a.name.clone(),
                namespace: a.namespace_name.clone(),
                state: match &a.running {
                    None => AppState::Started,
                    Some(t) if t.is_finished() => AppState::Finished,
                    Some(_) => AppState::Running,
                },
            })
            .collect()
    }

    /// Ends every application, waiting at most `deadline` for each one still running on its
    /// thread. One still running then keeps its cells: its thread may still be in them (the
    /// system leaves mapped what a live handle can reach).
    pub(crate) fn end_apps_within(&mut self, deadline: std::time::Duration) {
        let ids: Vec<u64> = self.apps().iter().map(|a| a.id).collect();
        for id in ids {
            if self.wait_app_within(id, deadline).is_err() && self.app_namespace(id).is_some() {
                let running = self
                    .apps()
                    .iter()
                    .any(|a| a.id == id && a.state == AppState::Running);
                if running {
                    log::warn!(target: "nano_core", "application #{id} still runs; its cells stay mapped");
                    continue;
                }
            }
            let _ = self.end_app(id);
        }
    }

    /// The namespace of a started application.
    pub fn app_namespace(&self, id: u64) -> Option<NamespaceId> {
        self.apps
            .list
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.namespace)
    }
}
