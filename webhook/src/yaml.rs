//! How berth reads YAML (berth.yaml, `--context` files, test files) and
//! writes it for people (diffs): serde-saphyr, with
//! the options that keep what a file means as serde_yaml read it, and the
//! strictness serde_yaml lacked. Every error names its line and column.

use serde::de::DeserializeOwned;

/// A YAML error in words for an operator, with its line and column. Boxed:
/// serde-saphyr's error is over 100 bytes, which every `Result` holding it
/// would carry.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.render_with_formatter(&serde_saphyr::UserMessageFormatter))]
pub struct Error(Box<serde_saphyr::Error>);

impl From<serde_saphyr::Error> for Error {
    fn from(error: serde_saphyr::Error) -> Self {
        Self(Box::new(error))
    }
}

/// One YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_saphyr::from_str_with_options(text, options()).map_err(Error::from)
}

/// Every document of a multi-document stream (`---`), empty ones left out.
pub fn documents<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, Error> {
    serde_saphyr::from_multiple_with_options(text, options()).map_err(Error::from)
}

/// A value as YAML text, for people to read (`berth eval --diff`).
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(value)
}

fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // YAML 1.2 scalars, as serde_yaml read them: `yes`, `on`, `0755` and
    // `1_000` stay strings where no type says otherwise (plugin settings).
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    // One line per error, for logs; the position is in the message.
    options.with_snippet = false;
    // Duplicate keys stay errors (the default). The text is already in
    // memory, so counts bound nothing: a cluster's worth of objects may be
    // any number of documents and nodes. Aliases and anchors stay bounded
    // (the default budget), so a small file cannot expand into a huge one,
    // and so does depth, at the default 64 levels (a pod is about 12):
    // serde-saphyr's recursion takes more stack per level than serde_yaml's
    // did at its 128, about 26 KB in a debug build, where 2 MiB threads
    // reach 75.
    if let Some(budget) = options.budget.as_mut() {
        budget.max_documents = usize::MAX;
        budget.max_nodes = usize::MAX;
        budget.max_events = usize::MAX;
        budget.max_total_scalar_bytes = usize::MAX;
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_duplicate_key_is_an_error_naming_its_line() {
        for text in ["a: 1\nb:\n  c: 1\n  c: 2\n", "a: 1\nb: {c: 1, c: 2}\n", "b: 1\nb: 2\n"] {
            let err = from_str::<Value>(text).unwrap_err().to_string();
            assert!(err.contains("duplicate") && err.contains("line "), "{text:?}: {err}");
        }
        let err = from_str::<Value>("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn scalars_read_as_serde_yaml_read_them() {
        let value: Value = from_str("a: yes\nb: on\nc: 0755\nd: 1_000\ne: true\nf: 0x1F\ng: ~\nh: 1.5\n").unwrap();
        assert_eq!(
            value,
            json!({"a": "yes", "b": "on", "c": "0755", "d": "1_000", "e": true, "f": 31, "g": null, "h": 1.5})
        );
        // JSON has no infinity: serde_yaml handed plugins null, silently.
        assert!(from_str::<Value>("a: .inf\n").is_err());
    }

    #[test]
    fn documents_skip_empty_ones_and_have_no_count_limit() {
        assert_eq!(documents::<Value>("a: 1\n---\n---\nb: 2\n").unwrap(), vec![json!({"a": 1}), json!({"b": 2})]);
        let many = "kind: Job\n---\n".repeat(5000);
        assert_eq!(documents::<Value>(&many).unwrap().len(), 5000);
    }

    #[test]
    fn depth_is_bounded() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(from_str::<Value>(&nested(64)).is_ok());
        let err = from_str::<Value>(&nested(65)).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (name, previous) in
            ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            text.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 10].join(", ")));
        }
        assert!(from_str::<Value>(&text).is_err(), "10^9 scalars from {} bytes", text.len());
    }
}
