//! What a kernel keeps about its applications, and how a run ended: data only (the operations
//! are in `apps.rs`), so that the kernel can hold its table without importing the operations.

use std::thread::JoinHandle;

use crate_metadata::NamespaceId;
use loader::Handle;

/// The application entry point convention ([`cell_abi::MAIN`]).
pub type MainFn = cell_abi::Main;

/// How a run of an application ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `main` returned this exit code.
    Exited(i32),
    /// `main` panicked with this message; the panic stopped at the entry point.
    Panicked(String),
}

/// How a thread for an application is made.
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    /// The thread's stack size in bytes (the platform's default when `None`).
    pub stack_size: Option<usize>,
}

/// Where a started application is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppState {
    /// Loaded; `main` has not run on a thread of its own.
    Started,
    /// `main` runs on its thread.
    Running,
    /// `main` returned (or panicked) on its thread; the application waits to be ended.
    Finished,
}

impl std::fmt::Display for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppState::Started => "started",
            AppState::Running => "running",
            AppState::Finished => "finished",
        })
    }
}

/// One started application, as [`Kernel::apps`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppInfo {
    /// Its id.
    pub id: u64,
    /// The application's cell name.
    pub name: String,
    /// Its namespace's name (`app:hello#1`).
    pub namespace: String,
    /// Where it is.
    pub state: AppState,
}

/// A started application.
pub(crate) struct App {
    /// Its id, unique for the kernel's life.
    pub id: u64,
    /// The application's cell name.
    pub name: String,
    /// Its namespace.
    pub namespace: NamespaceId,
    /// The namespace's name (`app:hello#1`).
    pub namespace_name: String,
    pub(crate) main: Handle<MainFn>,
    pub(crate) running: Option<JoinHandle<Outcome>>,
}

/// The applications a kernel has started and not ended.
#[derive(Default)]
pub struct Apps {
    pub(crate) next: u64,
    pub(crate) list: Vec<App>,
}
