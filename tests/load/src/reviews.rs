//! The AdmissionReviews to replay, each split around its request uid so a
//! fresh uid costs a copy, not a parse: the body sent is the file's bytes
//! with only the uid changed.

use hyper::body::Bytes;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReviewsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path} is not JSON")]
    NotJson {
        path: PathBuf,
        #[source]
        error: serde_json::Error,
    },
    #[error("{path} is not an AdmissionReview with a request.uid")]
    NoUid { path: PathBuf },
    #[error("no AdmissionReview (*.json) among the paths given")]
    Empty,
}

/// One review, ready to send with any uid.
#[derive(Debug)]
struct Template {
    path: PathBuf,
    /// Everything before the uid's text, and everything after it.
    before: Bytes,
    after: Bytes,
}

/// The reviews, handed out round-robin, each time with a new uid.
#[derive(Debug)]
pub struct Reviews {
    templates: Vec<Template>,
    next: AtomicU64,
    /// Distinguishes this run's uids from another run's.
    run: u32,
}

/// One request body and the uid it carries.
pub struct Body {
    pub uid: String,
    pub bytes: Bytes,
}

impl Reviews {
    /// Files as given; directories contribute their `*.json`, in name order.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ReviewsError> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                let entries =
                    std::fs::read_dir(path).map_err(|error| ReviewsError::Read { path: path.clone(), error })?;
                let mut found = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|error| ReviewsError::Read { path: path.clone(), error })?;
                    let file = entry.path();
                    if file.extension().is_some_and(|e| e == "json") && file.is_file() {
                        found.push(file);
                    }
                }
                found.sort();
                files.extend(found);
            } else {
                files.push(path.clone());
            }
        }
        let templates = files.iter().map(|path| Template::read(path)).collect::<Result<Vec<_>, _>>()?;
        if templates.is_empty() {
            return Err(ReviewsError::Empty);
        }
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or_default();
        Ok(Self { templates, next: AtomicU64::new(0), run })
    }

    pub fn files(&self) -> impl Iterator<Item = (&Path, usize)> {
        self.templates.iter().map(|t| (t.path.as_path(), t.before.len() + 36 + t.after.len()))
    }

    /// The next review in turn, with a uid no other request of this run has.
    pub fn next(&self) -> Body {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let template = &self.templates[(seq % self.templates.len() as u64) as usize];
        // UUID-shaped (36 characters, like the apiserver's), so the body
        // keeps the file's size.
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", self.run, seq & 0xffff_ffff_ffff);
        let mut bytes = Vec::with_capacity(template.before.len() + uid.len() + template.after.len());
        bytes.extend_from_slice(&template.before);
        bytes.extend_from_slice(uid.as_bytes());
        bytes.extend_from_slice(&template.after);
        Body { uid, bytes: Bytes::from(bytes) }
    }
}

impl Template {
    fn read(path: &Path) -> Result<Self, ReviewsError> {
        let text = std::fs::read(path).map_err(|error| ReviewsError::Read { path: path.to_owned(), error })?;
        let value: Value =
            serde_json::from_slice(&text).map_err(|error| ReviewsError::NotJson { path: path.to_owned(), error })?;
        let uid = value["request"]["uid"].as_str().ok_or_else(|| ReviewsError::NoUid { path: path.to_owned() })?;
        let quoted =
            serde_json::to_string(uid).map_err(|error| ReviewsError::NotJson { path: path.to_owned(), error })?;
        let found: Vec<usize> = find_all(&text, quoted.as_bytes());
        // The uid's text appears once (the usual case): keep the file's
        // bytes. Otherwise (the object's own uid is the same, say) fall back
        // to re-serializing with a marker only this code writes.
        let (text, at, len) = match found.as_slice() {
            [at] => (text, *at, quoted.len()),
            _ => {
                const MARKER: &str = "\"berth-load-uid-marker\"";
                let mut value = value;
                value["request"]["uid"] = Value::String(MARKER.trim_matches('"').to_owned());
                let text = serde_json::to_vec(&value)
                    .map_err(|error| ReviewsError::NotJson { path: path.to_owned(), error })?;
                let at = find_all(&text, MARKER.as_bytes())
                    .first()
                    .copied()
                    .ok_or_else(|| ReviewsError::NoUid { path: path.to_owned() })?;
                (text, at, MARKER.len())
            }
        };
        // Keep the quotes in the template; the uid goes between them.
        let before = Bytes::copy_from_slice(&text[..at + 1]);
        let after = Bytes::copy_from_slice(&text[at + len - 1..]);
        Ok(Self { path: path.to_owned(), before, after })
    }
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn every_body_is_the_file_with_a_new_uid() {
        let tmp = tempdir();
        let dir = tmp.path().to_owned();
        let text = "{\n  \"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\",\n  \"request\": {\"uid\": \"2df0b5b4-431f-5254-a1b2-0b373ac5edd2\", \"object\": {\"metadata\": {\"uid\": \"other\"}}}\n}";
        write(&dir, "a.json", text);
        let reviews = Reviews::load(std::slice::from_ref(&dir)).expect("loads");
        let (first, second) = (reviews.next(), reviews.next());
        assert_ne!(first.uid, second.uid);
        assert_eq!(first.bytes.len(), text.len(), "a uid of the same length keeps the size");
        let expected = text.replace("2df0b5b4-431f-5254-a1b2-0b373ac5edd2", &first.uid);
        assert_eq!(std::str::from_utf8(&first.bytes).expect("utf-8"), expected);
        let parsed: Value = serde_json::from_slice(&second.bytes).expect("json");
        assert_eq!(parsed["request"]["uid"], second.uid.as_str());
        assert_eq!(parsed["request"]["object"]["metadata"]["uid"], "other");
    }

    #[test]
    fn a_uid_that_appears_twice_is_replaced_only_in_the_request() {
        let tmp = tempdir();
        let dir = tmp.path().to_owned();
        write(&dir, "a.json", r#"{"request": {"uid": "same", "object": {"metadata": {"uid": "same"}}}}"#);
        let reviews = Reviews::load(std::slice::from_ref(&dir)).expect("loads");
        let body = reviews.next();
        let parsed: Value = serde_json::from_slice(&body.bytes).expect("json");
        assert_eq!(parsed["request"]["uid"], body.uid.as_str());
        assert_eq!(parsed["request"]["object"]["metadata"]["uid"], "same");
    }

    #[test]
    fn directories_give_their_json_files_round_robin_in_name_order() {
        let tmp = tempdir();
        let dir = tmp.path().to_owned();
        write(&dir, "2.json", r#"{"request": {"uid": "b"}, "n": 2}"#);
        write(&dir, "1.json", r#"{"request": {"uid": "a"}, "n": 1}"#);
        write(&dir, "notes.txt", "not a review");
        let reviews = Reviews::load(std::slice::from_ref(&dir)).expect("loads");
        let order: Vec<u64> = (0..4)
            .map(|_| serde_json::from_slice::<Value>(&reviews.next().bytes).expect("json")["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(order, [1, 2, 1, 2]);
    }

    #[test]
    fn a_file_without_a_request_uid_is_refused() {
        let tmp = tempdir();
        let dir = tmp.path().to_owned();
        let path = write(&dir, "a.json", r#"{"request": {}}"#);
        assert!(matches!(Reviews::load(&[path]), Err(ReviewsError::NoUid { .. })));
        let empty = dir.join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        assert!(matches!(Reviews::load(&[empty]), Err(ReviewsError::Empty)));
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }
}
