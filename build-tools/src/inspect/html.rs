//! The HTML format: one self-contained page (inline CSS, JS and data; no network, no libraries)
//! with an interactive graph of the view: drag to pan, wheel to zoom, a search box, and a click
//! on a cell highlights what it uses and what uses it, with the symbols in a side panel.
//!
//! The page lays the graph out in layers (users above what they use) in plain JS and draws it
//! as inline SVG. Once drawn, it sets `<body data-ready="N cells">`, which the headless-Chromium
//! test (`build-tools/tests/html.rs`) waits for.

use anyhow::{Context, Result};

use super::graph::Graph;

const PAGE: &str = include_str!("page/graph.html");
const CSS: &str = include_str!("page/graph.css");
const JS: &str = include_str!("page/graph.js");

/// Renders `graph` as an HTML page.
pub fn render(graph: &Graph) -> Result<String> {
    let data = serde_json::to_string(graph).context("serializing the graph for the page")?;
    // Inside <script>, `</` could end the element early; `<\/` is the same JSON string.
    let data = data.replace("</", "<\\/").replace("<!--", "<\\u0021--");
    let title = format!("cargo cell deps: {} ({})", graph.title, graph.source);
    Ok(PAGE
        .replace("__TITLE__", &escape(&title))
        .replace("__CSS__", CSS)
        .replace("__JS__", JS)
        .replace("__DATA__", &data))
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
