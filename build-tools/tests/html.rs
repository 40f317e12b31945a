//! The HTML page in headless Chromium (Debian's `chromium` package): it loads without a single
//! console message (no errors, no warnings), finishes drawing (`<body data-ready="N cells">`),
//! and shows every cell. Run for the real cells (offline snapshot) and for a generated system
//! of 500 cells.
//!
//! Chromium must be installed (`apt-get install -y chromium`); without it the test fails and
//! says so, rather than passing without having looked at the page.

mod inspect_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use build_tools::inspect::model::Snapshot;
use build_tools::inspect::synth::{generate, SynthOptions};
use build_tools::inspect::{show, Format, Options, Query};
use inspect_support::{snapshot, TempDir};

/// The Chromium binary: `$CHROMIUM`, or `chromium` / `chromium-browser` on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
        if let Some(path) = found {
            return path;
        }
    }
    panic!(
        "headless Chromium is needed to test the HTML page: install it with \
         `apt-get install -y chromium` (or set CHROMIUM to its path)"
    );
}

/// Loads `page` in headless Chromium; returns the DOM after the scripts ran, and the console
/// lines Chromium logged.
fn load(page: &Path, profile: &Path) -> (String, Vec<String>) {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,800",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chromium failed ({}):\n{stderr}",
        output.status
    );
    let console = stderr
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        console,
    )
}

fn check_page(s: &Snapshot, query: Query, label: &str) {
    let tmp = TempDir::new(&format!("html-{label}"));
    let options = Options {
        format: Format::Html,
        ..Options::default()
    };
    let html = show(s, &query, &options).expect("the page renders");
    for fetch in ["src=\"http", "href=\"http", "<link", "@import", "fetch("] {
        assert!(!html.contains(fetch), "the page loads nothing ({fetch})");
    }
    let page = tmp.0.join("deps.html");
    std::fs::write(&page, &html).expect("write the page");
    let (dom, console) = load(&page, &tmp.0.join("profile"));
    assert!(
        console.is_empty(),
        "{label}: console messages:\n{}",
        console.join("\n")
    );
    let names: Vec<&str> = s.registry.cells().map(|c| c.name.as_str()).collect();
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        dom.contains(&format!("data-ready=\"{} cells\"", names.len())),
        "{label}: the page did not finish drawing {} cells:\n{}",
        names.len(),
        &dom[..dom.len().min(2000)]
    );
    for name in distinct {
        assert!(
            dom.contains(&format!(">{name}")),
            "{label}: `{name}` is not on the page"
        );
    }
}

#[test]
fn the_page_shows_every_real_cell_without_console_errors() {
    check_page(snapshot(), Query::Ls, "real");
}

#[test]
fn the_page_draws_a_generated_system_of_500_cells() {
    let s = generate(&SynthOptions::default());
    check_page(&s, Query::Tree, "synth");
}
