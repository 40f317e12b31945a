//! The requests the server understands: one table ([`COMMANDS`]) that dispatching, `help` and the
//! error for an unknown request all read.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use loader::ReclaimError;

use super::load::Load;
use super::protocol::Response;
use super::{load_unload, swap, views};
use crate::apps::{AppState, LaunchOptions};
use crate::errors::render;
use crate::kernel::Kernel;
use crate::panic::panic_message;
use crate::reclaim::ReclaimPass;

/// What a handler gets: the kernel, and the background load when there is one.
pub struct Context<'a> {
    /// The kernel.
    pub kernel: &'a mut Kernel,
    /// The load of `--load N`.
    pub load: Option<&'a Load>,
}

/// One request: its name, its arguments, what it does, and its handler.
pub struct Command {
    /// The first word of the request line.
    pub name: &'static str,
    /// The arguments, as `help` shows them; empty when it takes none (then any is refused).
    pub args: &'static str,
    /// What it does, for `help`.
    pub about: &'static str,
    /// Handles the request; gets the rest of the line, trimmed.
    pub run: fn(&mut Context<'_>, &str) -> Response,
}

/// Every request, in the order `help` lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "ping",
        args: "",
        about: "answers `pong`",
        run: |_, _| Response::ok(vec!["pong".into()]),
    },
    Command {
        name: "ls",
        args: "",
        about:
            "every cell object, live and retired: version, id, namespace, size, dependents, SHA-256",
        run: |cx, _| Response::ok(views::ls(cx.kernel)),
    },
    Command {
        name: "ns",
        args: "",
        about: "the namespace tree with each namespace's cells",
        run: |cx, _| Response::ok(views::ns(cx.kernel)),
    },
    Command {
        name: "status",
        args: "",
        about: "the load's calls and failures, the epochs, retired versions mapped and reclaimed",
        run: |cx, _| Response::ok(views::status(cx.kernel, cx.load)),
    },
    Command {
        name: "apps",
        args: "",
        about: "the applications started and not ended",
        run: |cx, _| Response::ok(views::apps(cx.kernel)),
    },
    Command {
        name: "snapshot",
        args: "",
        about: "the registry and namespaces as one line of JSON (cargo cell ls|info|deps --live)",
        run: |cx, _| snapshot(cx.kernel),
    },
    Command {
        name: "swap",
        args: "<cell> [<object>] [--fresh [--force]]",
        about: "swaps a live cell for a new version (the manifest's when no object is named)",
        run: |cx, rest| swap::swap(cx.kernel, cx.load, rest),
    },
    Command {
        name: "load",
        args: "<cell|object> [--ns <namespace>]",
        about: "loads a cell of the manifest (or an object file: a path with a `/`), the \
                dependency cells it needs first, and runs its init; into _kernel by default",
        run: |cx, rest| load_unload::load(cx.kernel, rest),
    },
    Command {
        name: "unload",
        args: "<cell> [--ns <namespace>]",
        about: "unloads a cell nothing uses (refused naming its users), then the dependency \
                cells only it used",
        run: |cx, rest| load_unload::unload(cx.kernel, rest),
    },
    Command {
        name: "reclaim",
        args: "",
        about: "frees the retired versions no thread can run any more; says why the others stay",
        run: |cx, _| reclaim(cx.kernel),
    },
    Command {
        name: "run",
        args: "<app> [args...]",
        about: "starts an application in its own namespace, on its own thread",
        run: |cx, rest| run_app(cx.kernel, rest),
    },
    Command {
        name: "end",
        args: "<id>",
        about: "waits for an application (a few seconds at most) and tears its namespace down",
        run: |cx, rest| end_app(cx.kernel, rest),
    },
    Command {
        name: "help",
        args: "",
        about: "this list",
        run: |_, _| Response::ok(help()),
    },
    Command {
        name: "quit",
        args: "",
        about: "stops the server after replying",
        run: |_, _| Response {
            reply: control_protocol::Reply::ok(Vec::new()),
            quit: true,
        },
    },
];

/// `help`: one line per command, from the table.
pub fn help() -> Vec<String> {
    let usage = |c: &Command| format!("{} {}", c.name, c.args).trim_end().to_string();
    let width = COMMANDS.iter().map(|c| usage(c).len()).max().unwrap_or(0);
    COMMANDS
        .iter()
        .map(|c| format!("{:<width$}  {}", usage(c), c.about))
        .collect()
}

/// The names of the commands, for error messages: `` `ping`, `ls`, … ``.
fn names() -> String {
    COMMANDS
        .iter()
        .map(|c| format!("`{}`", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Handles one request line (already checked: one line, UTF-8, no control character). Never
/// panics: a panic while handling becomes an error reply.
pub fn dispatch(kernel: &mut Kernel, load: Option<&Load>, request: &str) -> Response {
    let mut cx = Context { kernel, load };
    match catch_unwind(AssertUnwindSafe(|| handle(&mut cx, request))) {
        Ok(response) => response,
        Err(payload) => Response::error(format!(
            "internal error while handling `{}`: {}",
            request.trim(),
            panic_message(&*payload)
        )),
    }
}

fn handle(cx: &mut Context<'_>, request: &str) -> Response {
    let request = request.trim();
    let (name, rest) = match request.split_once(char::is_whitespace) {
        Some((c, r)) => (c, r.trim()),
        None => (request, ""),
    };
    if name.is_empty() {
        return Response::error(format!("empty request (try {})", names()));
    }
    let Some(command) = COMMANDS.iter().find(|c| c.name == name) else {
        return Response::error(format!("unknown request `{name}` (try {})", names()));
    };
    if command.args.is_empty() && !rest.is_empty() {
        return Response::error(format!("`{name}` takes no arguments"));
    }
    (command.run)(cx, rest)
}

/// `snapshot`: the whole model (registry and namespaces) as one line of JSON, for
/// `cargo cell ls|info|deps --live`.
fn snapshot(kernel: &Kernel) -> Response {
    let snapshot = namespace::SystemSnapshot::live(
        kernel.system().registry().clone(),
        kernel.system().namespaces().clone(),
    );
    match serde_json::to_string(&snapshot) {
        Ok(json) => Response::ok(vec![json]),
        Err(e) => Response::error(format!("serializing the snapshot: {e}")),
    }
}

/// How long `reclaim` waits for grace periods to end (the load threads pass a quiescent point
/// between calls; a running application only when it returns).
const RECLAIM_WAIT: Duration = Duration::from_secs(1);

/// `reclaim`: a reclaim pass now, again for a short while if a version waits for a grace period.
fn reclaim(kernel: &mut Kernel) -> Response {
    let deadline = Instant::now() + RECLAIM_WAIT;
    let mut all = ReclaimPass::default();
    loop {
        let pass = kernel.reclaim_retired();
        all.reclaimed.extend(pass.reclaimed);
        all.kept = pass.kept;
        if !all
            .kept
            .iter()
            .any(|k| matches!(k.why, ReclaimError::GracePeriod { .. }))
            || Instant::now() >= deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Response::ok(views::reclaim(kernel, &all))
}

/// `run <app> [args...]`: starts the application on a thread of its own.
fn run_app(kernel: &mut Kernel, rest: &str) -> Response {
    let mut words = rest.split_whitespace();
    let Some(app) = words.next() else {
        return Response::error("usage: run <app> [args...]");
    };
    let args: Vec<String> = words.map(str::to_string).collect();
    match kernel.launch_app(app, args, &LaunchOptions::default()) {
        Ok(id) => {
            let ns = kernel
                .apps()
                .into_iter()
                .find(|a| a.id == id)
                .map(|a| a.namespace)
                .unwrap_or_default();
            Response::ok(vec![format!(
                "started #{id} {app} in namespace {ns} (`end {id}` to end it)"
            )])
        }
        Err(e) => Response::error(render(&e)),
    }
}

/// How long `end` waits for an application's thread before it refuses.
const END_DEADLINE: Duration = Duration::from_secs(5);

/// `end <id>`: waits (at most [`END_DEADLINE`]) for the application and tears its namespace down.
fn end_app(kernel: &mut Kernel, rest: &str) -> Response {
    let Ok(id) = rest.trim().trim_start_matches('#').parse::<u64>() else {
        return Response::error("usage: end <id> (see `apps`)");
    };
    let on_thread = kernel
        .apps()
        .iter()
        .any(|a| a.id == id && a.state != AppState::Started);
    let outcome = if on_thread {
        match kernel.wait_app_within(id, END_DEADLINE) {
            Ok(o) => format!("{o:?}"),
            Err(e) => return Response::error(render(&e)),
        }
    } else {
        "not running".into()
    };
    match kernel.end_app(id) {
        Ok(cells) => Response::ok(vec![format!(
            "#{id} ended ({outcome}); its namespace and {cells} cell(s) are gone"
        )]),
        Err(e) => Response::error(render(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_in_help_once() {
        let help = help();
        assert_eq!(help.len(), COMMANDS.len());
        for c in COMMANDS {
            let n = help
                .iter()
                .filter(|l| l.split_whitespace().next() == Some(c.name))
                .count();
            assert_eq!(n, 1, "{}", c.name);
        }
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len(), "two commands share a name");
    }
}
