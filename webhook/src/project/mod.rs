//! A policy author's plugin project, outside this repository: what
//! `berth plugin new` writes (`scaffold.rs`) and how `berth plugin build`
//! turns it into a component with the language's own toolchain
//! (`toolchain.rs`).

mod scaffold;
mod toolchain;

pub use scaffold::{ScaffoldError, scaffold};
pub use toolchain::{BuildError, Built, build};

use std::path::Path;

/// The WIT contract every plugin exports (`berth plugin wit`).
pub fn wit() -> &'static str {
    scaffold::text("wit", "policy.wit")
}

/// The languages a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Js,
    Python,
    Go,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Js => "js",
            Self::Python => "python",
            Self::Go => "go",
        }
    }

    /// The manifest that marks a project of this language.
    fn manifest(self) -> &'static str {
        match self {
            Self::Rust => "Cargo.toml",
            Self::Js => "package.json",
            Self::Python => "pyproject.toml",
            Self::Go => "go.mod",
        }
    }

    /// The project's language, by its manifest. A Go project has a
    /// package.json too (for jco), so go.mod is looked for first.
    pub fn of(dir: &Path) -> Option<Self> {
        [Self::Rust, Self::Go, Self::Js, Self::Python]
            .into_iter()
            .find(|language| dir.join(language.manifest()).is_file())
    }
}

/// A project name: a Kubernetes-style name that is also a package name in
/// every language (`[a-z][a-z0-9-]*`, at most 63 characters).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.len() <= 63;
    if valid { Ok(()) } else { Err("must be lowercase letters, digits and '-', start with a letter, at most 63") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        for good in ["demo", "demo-rust", "a1"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Demo", "1demo", "demo-", "de_mo", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
