//! The HTML page in headless Chromium (Debian's `chromium` package): it loads without a single
//! console message (no errors, no warnings), finishes drawing (`<body data-ready="N cells">`),
//! and shows every cell; each cell is drawn inside the box of its namespace, the boxes apart,
//! and dependency cells distinctly. Run for the real cells (offline snapshot) and for a
//! generated system of 500 cells.
//!
//! Chromium must be installed (`apt-get install -y chromium`); without it the test fails and
//! says so, rather than passing without having looked at the page.

mod inspect_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use build_tools::inspect::model::Model;
use build_tools::inspect::synth::{generate, SynthOptions};
use build_tools::inspect::{show, Format, Options, Query};
use crate_metadata::{CellKind, Origin};
use inspect_support::{model, TempDir};

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

/// Renders `query` as a page, loads it, checks that it drew every cell without a console
/// message, and returns the DOM.
fn check_page(m: &Model, query: Query, label: &str) -> String {
    let s = &m.snapshot;
    let tmp = TempDir::new(&format!("html-{label}"));
    let options = Options {
        format: Format::Html,
        ..Options::default()
    };
    let html = show(m, &query, &options).expect("the page renders");
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
    dom
}

/// The attributes of every `<tag …>` element in `dom`, in document order.
fn elements(dom: &str, tag: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let end = after.find('>').expect("a tag ends");
        let mut attrs = BTreeMap::new();
        let mut text = &after[..end];
        while let Some(eq) = text.find("=\"") {
            let name = text[..eq].trim().to_string();
            let value_end = text[eq + 2..].find('"').expect("a quoted value");
            attrs.insert(name, text[eq + 2..eq + 2 + value_end].to_string());
            text = &text[eq + 2 + value_end + 1..];
        }
        out.push(attrs);
        rest = &after[end..];
    }
    out
}

fn num(attrs: &BTreeMap<String, String>, name: &str) -> f64 {
    attrs
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("`{name}` is a number in {attrs:?}"))
}

/// A rectangle: x, y, width, height.
type Rect = (f64, f64, f64, f64);

fn inside(inner: Rect, outer: Rect) -> bool {
    inner.0 >= outer.0
        && inner.1 >= outer.1
        && inner.0 + inner.2 <= outer.0 + outer.2
        && inner.1 + inner.3 <= outer.1 + outer.3
}

fn apart(a: Rect, b: Rect) -> bool {
    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1
}

#[test]
fn the_page_shows_every_real_cell_in_its_namespace_without_console_errors() {
    let m = model();
    let s = &m.snapshot;
    let dom = check_page(m, Query::Ls, "real");
    // One box per namespace that has cells (and one for the base image and the platform),
    // none overlapping another.
    let boxes: BTreeMap<String, Rect> = elements(&dom, "rect")
        .into_iter()
        .filter(|a| a.get("class").is_some_and(|c| c == "ns-box"))
        .map(|a| {
            let r = (
                num(&a, "x"),
                num(&a, "y"),
                num(&a, "width"),
                num(&a, "height"),
            );
            (a["data-ns"].clone(), r)
        })
        .collect();
    let mut want: Vec<String> = s
        .registry
        .cells()
        .map(|c| {
            c.namespace
                .and_then(|ns| s.namespaces.get(ns))
                .map_or(String::new(), |ns| ns.name.clone())
        })
        .collect();
    want.sort();
    want.dedup();
    assert_eq!(boxes.keys().cloned().collect::<Vec<_>>(), want);
    for (a, ra) in &boxes {
        for (b, rb) in boxes.iter().filter(|(b, _)| *b != a) {
            assert!(apart(*ra, *rb), "the boxes of `{a}` and `{b}` overlap");
        }
    }
    // Every cell is drawn inside its namespace's box; dependency cells are marked as such.
    let groups = elements(&dom, "g");
    let rects = elements(&dom, "rect");
    let node_rects = rects.iter().filter(|a| !a.contains_key("class"));
    let nodes = groups
        .iter()
        .filter(|a| a.get("class").is_some_and(|c| c.starts_with("node ")));
    let mut seen = 0;
    for (g, r) in nodes.zip(node_rects) {
        let id: u32 = g["data-id"].parse().unwrap();
        let cell = s
            .registry
            .cells()
            .find(|c| c.id.0 == id)
            .expect("a node is a cell");
        let ns = cell
            .namespace
            .and_then(|ns| s.namespaces.get(ns))
            .map_or("", |ns| ns.name.as_str());
        assert_eq!(g["data-ns"], ns, "the group of {}", cell.name);
        let (x, y) = g["transform"]
            .trim_start_matches("translate(")
            .trim_end_matches(')')
            .split_once(',')
            .map(|(x, y)| (x.parse::<f64>().unwrap(), y.parse::<f64>().unwrap()))
            .expect("a node is placed with translate(x,y)");
        let rect = (x, y, num(r, "width"), num(r, "height"));
        assert!(
            inside(rect, boxes[ns]),
            "{} at {rect:?} is outside the box of `{ns}` {:?}",
            cell.name,
            boxes[ns]
        );
        let classes: Vec<&str> = g["class"].split(' ').collect();
        assert_eq!(
            classes.contains(&"dep"),
            cell.kind == Some(CellKind::Deps),
            "{} is drawn as a dependency crate exactly when it is one",
            cell.name
        );
        if cell.origin != Origin::Object {
            assert!(classes
                .iter()
                .any(|c| c.starts_with("kind-base") || c.starts_with("kind-platform")));
        }
        seen += 1;
    }
    assert_eq!(seen, s.registry.cells().count(), "every cell was checked");
    assert!(
        s.registry.cells().any(|c| c.kind == Some(CellKind::Deps)),
        "the real cells have dependency cells"
    );
}

#[test]
fn the_page_draws_a_generated_system_of_500_cells() {
    let s = Model::from(generate(&SynthOptions::default()));
    check_page(&s, Query::Tree, "synth");
}
