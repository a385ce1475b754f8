//! The AdmissionReview fixtures rendered from real Helm charts
//! (tests/fixtures/README.md says what is in them).

use serde_json::Value;
use std::path::{Path, PathBuf};

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// One fixture review file.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    pub body: String,
    pub review: Value,
}

impl Fixture {
    pub fn chart(&self) -> &str {
        self.path.parent().and_then(Path::parent).and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or("")
    }

    pub fn file_name(&self) -> &str {
        self.path.file_name().and_then(|n| n.to_str()).unwrap_or("")
    }

    pub fn request(&self) -> &Value {
        &self.review["request"]
    }

    pub fn object(&self) -> &Value {
        &self.review["request"]["object"]
    }

    pub fn kind(&self) -> &str {
        self.review["request"]["kind"]["kind"].as_str().unwrap_or("")
    }

    pub fn operation(&self) -> &str {
        self.review["request"]["operation"].as_str().unwrap_or("")
    }
}

/// Every review of every chart, in a stable order.
pub fn all() -> Vec<Fixture> {
    let mut paths = Vec::new();
    for chart in std::fs::read_dir(dir()).expect("tests/fixtures exists").flatten() {
        let reviews = chart.path().join("reviews");
        if let Ok(entries) = std::fs::read_dir(&reviews) {
            paths.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")));
        }
    }
    paths.sort();
    assert!(paths.len() >= 60, "expected the 62 fixture reviews, found {}", paths.len());
    paths.into_iter().map(load).collect()
}

pub fn load(path: PathBuf) -> Fixture {
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let review = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Fixture { path, body, review }
}

/// A fixture by chart and file name: `get("pulsar", "005-pod-pulsar-bookie-0.json")`.
pub fn get(chart: &str, file: &str) -> Fixture {
    load(dir().join(chart).join("reviews").join(file))
}
