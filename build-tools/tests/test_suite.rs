//! `cargo cell test` on a machine that lacks what the tests need: it stops before running any
//! step and prints the exact commands to install the programs (it cannot install them here:
//! `PATH` holds no package manager); `--check` reports and runs nothing either way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("build-tools sits in the workspace")
        .to_path_buf()
}

/// A directory of executable stand-ins (`#!/bin/sh`, exit 0) for `commands`, removed on drop.
struct FakePath(PathBuf);

impl FakePath {
    fn new(label: &str, commands: &[&str]) -> FakePath {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cell-suite-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for c in commands {
            let file = dir.join(c);
            std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        FakePath(dir)
    }
}

impl Drop for FakePath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `cargo cell test args` in the workspace with `PATH` set to `path` (cargo itself is found
/// through `$CARGO`, as under the cargo alias).
fn cargo_cell_test(path: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-cell"))
        .arg("test")
        .args(args)
        .current_dir(workspace_root())
        .env("PATH", path)
        .env("CARGO", env!("CARGO"))
        .output()
        .expect("cargo-cell runs")
}

#[test]
fn with_an_empty_path_it_prints_the_install_commands_and_runs_no_step() {
    let empty = FakePath::new("empty", &[]);
    let out = cargo_cell_test(&empty.0, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        !stdout.contains("== cargo cell test ["),
        "a step ran:\n{stdout}"
    );
    for program in [
        "chromium",
        "qemu-system-x86_64",
        "gdb",
        "perf",
        "nightly",
        "cargo-fuzz",
    ] {
        assert!(
            stderr.contains(&format!("  {program} ")),
            "{program}:\n{stderr}"
        );
    }
    assert!(stderr.contains("no apt-get in PATH"), "{stderr}");
    for command in [
        "apt-get install -y -qq python3 git g++ chromium qemu-system-x86 gdb linux-perf",
        "rustup toolchain install nightly --profile minimal",
        "cargo install --locked cargo-fuzz",
    ] {
        assert!(stderr.contains(command), "{command}:\n{stderr}");
    }
}

#[test]
fn check_names_only_what_is_missing_and_how_it_would_be_installed() {
    let some = FakePath::new(
        "some",
        &[
            "apt-get",
            "sudo",
            "rustup",
            "cargo",
            "cargo-fuzz",
            "python3",
            "git",
            "c++",
            "qemu-system-x86_64",
            "perf",
        ],
    );
    let out = cargo_cell_test(&some.0, &["--check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("  chromium "), "{stderr}");
    assert!(stderr.contains("  gdb "), "{stderr}");
    assert!(!stderr.contains("  perf "), "{stderr}");
    // As root it would run the command itself, otherwise through sudo (whose stand-in here says
    // yes): the packages are the two missing ones either way.
    assert!(
        stderr.contains("apt-get install -y -qq chromium gdb\n"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("rustup toolchain"),
        "nightly is there: {stderr}"
    );

    let all = FakePath::new(
        "all",
        &[
            "rustup",
            "cargo-fuzz",
            "python3",
            "git",
            "c++",
            "chromium",
            "qemu-system-x86_64",
            "gdb",
            "perf",
        ],
    );
    let out = cargo_cell_test(&all.0, &["--check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("every program the tests need is here"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("== cargo cell test ["),
        "--check ran a step:\n{stdout}"
    );
}

#[test]
fn list_names_the_steps_in_order_ending_with_the_workspace_tests() {
    let empty = FakePath::new("list", &[]);
    let out = cargo_cell_test(&empty.0, &["--list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with("workspace tests: cargo test --workspace"),
        "{stdout}"
    );
    assert!(stdout.contains("fuzz targets: fuzz/ci.sh"), "{stdout}");
}
