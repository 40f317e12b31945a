//! The programs the tests need, whether this machine has them, and how to get the missing ones.
//!
//! Each [`Program`] is found by searching `PATH` (nothing is run to find it), except the nightly
//! toolchain, which `rustup` is asked about. What is missing becomes an [`InstallPlan`]: Debian
//! packages through `apt-get` (directly as root, through `sudo -n` when that works without a
//! password), toolchain pieces through `rustup` and `cargo install`. What cannot be installed here
//! is reported with the exact command a person runs.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program one of the test steps runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    /// The command looked up in `PATH` (or the toolchain, for [`Source::Rustup`]).
    pub command: &'static str,
    /// Where it comes from.
    pub source: Source,
    /// Which step or test needs it, for people.
    pub needed_by: &'static str,
}

/// Where a missing program comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Debian package of that name.
    Apt(&'static str),
    /// The nightly Rust toolchain (`rustup toolchain install nightly`).
    Rustup,
    /// A crate installed with `cargo install --locked <crate>`.
    CargoInstall(&'static str),
}

/// Every program the steps of [`super::steps`] need, in the order they are first needed.
pub const PROGRAMS: &[Program] = &[
    Program {
        command: "python3",
        source: Source::Apt("python3"),
        needed_by: "the import-circle gate (.ci/import_cycles.py)",
    },
    Program {
        command: "git",
        source: Source::Apt("git"),
        needed_by: "the 800-line gate (the files git tracks)",
    },
    Program {
        command: "c++",
        source: Source::Apt("g++"),
        needed_by: "the fuzz targets (libFuzzer is C++)",
    },
    Program {
        command: "nightly",
        source: Source::Rustup,
        needed_by: "the fuzz targets (fuzz/ci.sh: libFuzzer's instrumentation needs nightly)",
    },
    Program {
        command: "cargo-fuzz",
        source: Source::CargoInstall("cargo-fuzz"),
        needed_by: "the fuzz targets (fuzz/ci.sh)",
    },
    Program {
        command: "chromium",
        source: Source::Apt("chromium"),
        needed_by: "the dependency-graph page test (build-tools/tests/html.rs)",
    },
    Program {
        command: "qemu-system-x86_64",
        source: Source::Apt("qemu-system-x86"),
        needed_by: "the bare-metal boot tests (build-tools/tests/qemu.rs)",
    },
    Program {
        command: "gdb",
        source: Source::Apt("gdb"),
        needed_by: "the debugger test (nano_core/tests/debuggers.rs)",
    },
    Program {
        command: "perf",
        source: Source::Apt("linux-perf"),
        needed_by: "the profiler test (nano_core/tests/debuggers.rs)",
    },
];

/// What this machine offers for installing, found once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `PATH`, as the search sees it.
    pub path: Option<OsString>,
    /// Whether this process runs as root.
    pub root: bool,
    /// Whether `sudo -n true` succeeds (sudo without a password).
    pub sudo: bool,
}

impl Machine {
    /// This process's machine: its `PATH`, its user, and whether sudo asks for a password.
    pub fn current() -> Machine {
        let path = std::env::var_os("PATH");
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let sudo = !root
            && find_in(path.as_deref(), "sudo").is_some()
            && Command::new("sudo")
                .args(["-n", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        Machine { path, root, sudo }
    }

    /// The path of `command` in `PATH`, if it is there and executable.
    pub fn find(&self, command: &str) -> Option<PathBuf> {
        find_in(self.path.as_deref(), command)
    }

    /// Whether `program` is present.
    pub fn has(&self, program: &Program) -> bool {
        match program.source {
            Source::Rustup => self.find("rustup").is_some_and(|rustup| {
                Command::new(rustup)
                    .args(["run", "nightly", "rustc", "--version"])
                    .env("PATH", self.path.clone().unwrap_or_default())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }),
            _ => self.find(program.command).is_some(),
        }
    }
}

/// The first executable file named `command` in the directories of `path`.
fn find_in(path: Option<&std::ffi::OsStr>, command: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(command))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// One command of an install plan, with the words a person would type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallCommand {
    /// The program and its arguments.
    pub argv: Vec<String>,
}

impl InstallCommand {
    fn new(argv: &[&str]) -> InstallCommand {
        InstallCommand {
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Runs it, inheriting the terminal; `Err` names the command and how it ended.
    pub fn run(&self, root: &Path) -> Result<(), String> {
        let status = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .current_dir(root)
            .status()
            .map_err(|e| format!("cannot run `{self}`: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{self}` failed ({status})"))
        }
    }
}

impl fmt::Display for InstallCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv.join(" "))
    }
}

/// How the missing programs are to be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstallPlan {
    /// Nothing is missing.
    Nothing,
    /// These commands, run here in order, install everything missing.
    Install(Vec<InstallCommand>),
    /// Not everything can be installed from here: a person runs these commands (`reason` says
    /// why this process cannot).
    Manual {
        /// Why this process cannot install them itself.
        reason: String,
        /// The exact commands to run.
        commands: Vec<InstallCommand>,
    },
}

/// The plan for `missing` on `machine`.
pub fn plan(missing: &[Program], machine: &Machine) -> InstallPlan {
    if missing.is_empty() {
        return InstallPlan::Nothing;
    }
    let packages: Vec<&str> = missing
        .iter()
        .filter_map(|p| match p.source {
            Source::Apt(package) => Some(package),
            _ => None,
        })
        .collect();
    let mut commands = Vec::new();
    let mut reasons = Vec::new();
    if !packages.is_empty() {
        let sudo: &[&str] = if machine.root { &[] } else { &["sudo"] };
        let mut update = sudo.to_vec();
        update.extend(["apt-get", "update", "-qq"]);
        let mut install = sudo.to_vec();
        install.extend(["apt-get", "install", "-y", "-qq"]);
        install.extend(&packages);
        commands.push(InstallCommand::new(&update));
        commands.push(InstallCommand::new(&install));
        if machine.find("apt-get").is_none() {
            reasons.push(format!(
                "no apt-get in PATH (these are Debian's package names: {}; use your system's \
                 package manager)",
                packages.join(" ")
            ));
        } else if !machine.root && !machine.sudo {
            reasons.push("not root, and sudo asks for a password".to_string());
        }
    }
    if missing.iter().any(|p| p.source == Source::Rustup) {
        commands.push(InstallCommand::new(&[
            "rustup",
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]));
        if machine.find("rustup").is_none() {
            reasons.push("no rustup in PATH (https://rustup.rs)".to_string());
        }
    }
    for program in missing {
        if let Source::CargoInstall(krate) = program.source {
            commands.push(InstallCommand::new(&[
                "cargo", "install", "--locked", krate,
            ]));
            if machine.find("cargo").is_none() {
                reasons.push("no cargo in PATH".to_string());
            }
        }
    }
    if reasons.is_empty() {
        InstallPlan::Install(commands)
    } else {
        InstallPlan::Manual {
            reason: reasons.join("; "),
            commands,
        }
    }
}

/// The programs of [`PROGRAMS`] that `machine` lacks.
pub fn missing(machine: &Machine) -> Vec<Program> {
    PROGRAMS
        .iter()
        .filter(|p| !machine.has(p))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(path: Option<&str>, root: bool, sudo: bool) -> Machine {
        Machine {
            path: path.map(OsString::from),
            root,
            sudo,
        }
    }

    fn program(command: &str) -> Program {
        *PROGRAMS.iter().find(|p| p.command == command).unwrap()
    }

    fn argvs(commands: &[InstallCommand]) -> Vec<String> {
        commands.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn nothing_missing_needs_nothing() {
        assert_eq!(
            plan(&[], &machine(None, false, false)),
            InstallPlan::Nothing
        );
    }

    /// A directory of executable stand-ins for `commands`, removed on drop.
    struct FakePath(PathBuf);

    impl FakePath {
        fn new(label: &str, commands: &[&str]) -> FakePath {
            use std::os::unix::fs::PermissionsExt;
            let dir =
                std::env::temp_dir().join(format!("cell-test-path-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for c in commands {
                let file = dir.join(c);
                std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            FakePath(dir)
        }

        fn path(&self) -> Option<&str> {
            self.0.to_str()
        }
    }

    impl Drop for FakePath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn with_apt_get_root_or_sudo_installs_every_package_in_one_command() {
        let dir = FakePath::new("apt", &["apt-get"]);
        let missing = [program("chromium"), program("gdb"), program("perf")];
        let InstallPlan::Install(commands) = plan(&missing, &machine(dir.path(), true, false))
        else {
            panic!("root with apt-get installs")
        };
        assert_eq!(
            argvs(&commands),
            [
                "apt-get update -qq",
                "apt-get install -y -qq chromium gdb linux-perf"
            ]
        );
        let InstallPlan::Install(commands) = plan(&missing, &machine(dir.path(), false, true))
        else {
            panic!("sudo without a password installs")
        };
        assert_eq!(commands[1].argv[..3], ["sudo", "apt-get", "install"]);
        let InstallPlan::Manual { reason, commands } =
            plan(&missing, &machine(dir.path(), false, false))
        else {
            panic!("a password for sudo stops")
        };
        assert!(reason.contains("sudo asks for a password"), "{reason}");
        assert_eq!(
            commands[1].to_string(),
            "sudo apt-get install -y -qq chromium gdb linux-perf"
        );
    }

    #[test]
    fn the_nightly_toolchain_is_asked_of_rustup() {
        // A rustup that says yes to everything has nightly; no rustup, no nightly.
        let yes = FakePath::new("rustup", &["rustup"]);
        assert!(machine(yes.path(), false, false).has(&program("nightly")));
        let none = FakePath::new("none", &[]);
        assert!(!machine(none.path(), false, false).has(&program("nightly")));
    }

    #[test]
    fn without_apt_get_or_rustup_the_plan_is_manual_and_names_every_command() {
        let missing: Vec<Program> = PROGRAMS.to_vec();
        let InstallPlan::Manual { reason, commands } = plan(&missing, &machine(None, true, false))
        else {
            panic!("nothing can be installed without PATH")
        };
        assert!(reason.contains("no apt-get"), "{reason}");
        assert!(reason.contains("no rustup"), "{reason}");
        assert_eq!(
            argvs(&commands),
            [
                "apt-get update -qq",
                "apt-get install -y -qq python3 git g++ chromium qemu-system-x86 gdb linux-perf",
                "rustup toolchain install nightly --profile minimal",
                "cargo install --locked cargo-fuzz",
            ]
        );
    }

    #[test]
    fn a_program_is_found_only_as_an_executable_file_in_path() {
        let dir = FakePath::new("exec", &["perf"]);
        std::fs::write(dir.0.join("gdb"), "#!/bin/sh\n").unwrap();
        let m = machine(dir.path(), false, false);
        assert!(!m.has(&program("gdb")), "not executable");
        assert!(m.has(&program("perf")));
        assert!(!m.has(&program("chromium")));
    }
}
