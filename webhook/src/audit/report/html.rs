//! The report as one self-contained HTML file: the page's markup, styles
//! and script, Chart.js (vendored from npm under webhook/assets/chartjs,
//! its licences kept in the page), and the data, all inline. Its
//! Content-Security-Policy allows those inline scripts by hash and nothing
//! from anywhere, so the page cannot reach the network even by mistake.

use super::PageData;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::io::{self, Write};
use thiserror::Error;

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");
const CHART_JS: &str = include_str!("../../../assets/chartjs/chart.umd.min.js");
const CHART_JS_LICENCE: &str = include_str!("../../../assets/chartjs/LICENSE.md");
const COLOR_LICENCE: &str = include_str!("../../../assets/chartjs/LICENSE-kurkle-color");

#[derive(Debug, Error)]
pub enum HtmlError {
    #[error("encoding the report's data")]
    Encode(#[from] serde_json::Error),
    #[error("writing the report")]
    Write(#[source] io::Error),
}

/// Write the page for `data` to `out`.
pub fn write(data: &PageData, out: &mut impl Write) -> Result<(), HtmlError> {
    // Inside <script>, `</script>` or `<!--` in a string would end or
    // confuse the element: JSON lets `<` be written `\u003c` everywhere,
    // and it only occurs inside strings.
    let json = serde_json::to_string(data)?.replace('<', "\\u003c");
    let csp = format!(
        "default-src 'none'; script-src '{}' '{}'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'",
        script_hash(CHART_JS),
        script_hash(SCRIPT)
    );
    let licences = format!(
        "Chart.js {} is inlined below under the MIT licence:\n\n{}\n\nIt contains @kurkle/color, under the MIT licence:\n\n{}",
        chart_js_version(),
        CHART_JS_LICENCE.trim(),
        COLOR_LICENCE.trim()
    )
    // It goes in an HTML comment, which `--` would end.
    .replace("--", "- -");
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find("<!--@") {
        let (before, marker) = rest.split_at(at);
        let Some(end) = marker.find("-->") else { break };
        out.write_all(before.as_bytes()).map_err(HtmlError::Write)?;
        let piece: &str = match &marker[5..end] {
            "CSP" => &csp,
            "STYLE" => STYLE,
            "LICENCES" => &licences,
            "CHARTJS" => CHART_JS,
            "SCRIPT" => SCRIPT,
            "DATA" => &json,
            _ => &marker[..end + 3],
        };
        out.write_all(piece.as_bytes()).map_err(HtmlError::Write)?;
        rest = &marker[end + 3..];
    }
    out.write_all(rest.as_bytes()).map_err(HtmlError::Write)?;
    out.flush().map_err(HtmlError::Write)
}

/// The CSP source that allows one inline script.
fn script_hash(script: &str) -> String {
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script.as_bytes())))
}

/// From the bundle's banner (`Chart.js v4.6.2`).
pub fn chart_js_version() -> &'static str {
    CHART_JS
        .split_once("Chart.js v")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("(unknown version)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_bundle_is_the_pinned_version_and_safe_to_inline() {
        let pinned: serde_json::Value =
            serde_json::from_str(include_str!("../../../assets/chartjs/package.json")).expect("package.json");
        assert_eq!(Some(chart_js_version()), pinned["dependencies"]["chart.js"].as_str(), "run assets/chartjs/refresh");
        for (name, script) in [("chart.js", CHART_JS), ("page.js", SCRIPT)] {
            assert!(!script.to_ascii_lowercase().contains("</script"), "{name} would end its <script> element");
        }
        assert!(CHART_JS_LICENCE.contains("MIT") && COLOR_LICENCE.contains("MIT"));
    }

    #[test]
    fn every_marker_is_filled_and_the_policy_allows_exactly_the_inline_scripts() {
        for marker in ["CSP", "STYLE", "LICENCES", "CHARTJS", "SCRIPT", "DATA"] {
            assert_eq!(TEMPLATE.matches(&format!("<!--@{marker}-->")).count(), 1, "{marker}");
        }
        let mut page = Vec::new();
        write(&super::super::tests::sample_page(), &mut page).expect("written");
        let page = String::from_utf8(page).expect("utf-8");
        assert!(!page.contains("<!--@"), "a marker was left");
        let csp = page.split("Content-Security-Policy\" content=\"").nth(1).and_then(|s| s.split('"').next());
        let csp = csp.expect("a CSP meta tag");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        // The hashed texts are the script elements' exact contents.
        for script in [CHART_JS, SCRIPT] {
            assert!(page.contains(&format!(">{script}</script>")), "a script is not inlined verbatim");
            assert!(csp.contains(&script_hash(script)));
        }
        assert!(page.contains("Chart.js Contributors") && page.contains("Jukka Kurkela"), "the licences are kept");
        // A hostile string in the data cannot close the data element.
        assert!(page.contains(r"\u003c/script>\u003cscript>alert(1)\u003c/script>"), "the data is not escaped");
        assert_eq!(page.matches("</script>").count(), 3);
    }
}
