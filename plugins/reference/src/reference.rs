//! The image-reference grammar of github.com/distribution/reference:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | '[' IPv6address ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! remote-name      := path-component ['/' path-component]*
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]*/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" hex
//! algorithm        := /[A-Za-z][A-Za-z0-9]*/ ([+._-] /[A-Za-z][A-Za-z0-9]*/)*
//! hex              := /[0-9a-fA-F]{32,}/
//! ```
//!
//! with the normalisation of `ParseNormalizedNamed`: a first path segment is
//! a registry only if it contains `.` or `:`, is `localhost`, or has an
//! uppercase letter; otherwise the registry is `docker.io`. `index.docker.io`
//! is `docker.io`, and a one-segment Docker Hub name is an official image
//! under `library/`. The repository path is at most 255 characters, and a
//! digest must be a valid sha256, sha384 or sha512 one (lowercase hex of the
//! right length), as opencontainers/go-digest checks.
//!
//! One deliberate difference: when the first segment looks like a registry
//! (it has a `.` or `:`) but is not a valid `host[:port]`, such as
//! `my_host.com/app`, distribution/reference falls back to reading the whole
//! name as a registry-less path; this parser rejects it instead, because such
//! an image could not be pulled from anywhere.

use std::fmt;
use std::str::FromStr;

/// The registry of names that give none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's old name, normalised to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Where one-segment Docker Hub names live: `busybox` is `library/busybox`.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The longest repository path.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// The longest tag.
pub const TAG_LENGTH_MAX: usize = 128;

const LOCALHOST: &str = "localhost";

/// A normalised image reference: always a registry and a repository path,
/// with a tag, a digest, both or neither.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a reference (or a registry prefix) was refused, with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    input: String,
    kind: ErrorKind,
}

/// What exactly is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is empty.
    Empty,
    /// The input is a 64-hex-digit image ID, not a name.
    Identifier,
    /// The repository path has uppercase letters.
    Uppercase {
        repository: String,
    },
    /// The registry is not `host[:port]`.
    InvalidDomain {
        domain: String,
        reason: &'static str,
    },
    /// A prefix does not start with a registry host.
    NotARegistry {
        segment: String,
    },
    /// One `/`-separated path segment is malformed.
    InvalidPathComponent {
        component: String,
        reason: &'static str,
    },
    /// The repository path is longer than [`NAME_TOTAL_LENGTH_MAX`].
    NameTooLong {
        length: usize,
    },
    InvalidTag {
        tag: String,
        reason: &'static str,
    },
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
    /// A well-formed digest of an algorithm other than sha256/384/512.
    UnsupportedDigest {
        algorithm: String,
    },
}

impl ParseError {
    fn new(input: &str, kind: ErrorKind) -> Self {
        Self { input: input.to_owned(), kind }
    }

    /// The text that was refused.
    pub fn input(&self) -> &str {
        &self.input
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid reference {:?}: {}", self.input, self.kind)
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("repository name must have at least one component"),
            Self::Identifier => f.write_str("a 64-hex-digit image ID is not a repository name"),
            Self::Uppercase { repository } => write!(f, "repository name {repository:?} must be lowercase"),
            Self::InvalidDomain { domain, reason } => {
                write!(f, "registry {domain:?} is not a valid host[:port]: {reason}")
            }
            Self::NotARegistry { segment } => write!(
                f,
                "{segment:?} is not a registry host (one has a '.' or a ':port', or is localhost); \
                 write docker.io/{segment} for a Docker Hub namespace"
            ),
            Self::InvalidPathComponent { component, reason } => write!(f, "path component {component:?} {reason}"),
            Self::NameTooLong { length } => {
                write!(f, "repository name is {length} characters long, more than {NAME_TOTAL_LENGTH_MAX}")
            }
            Self::InvalidTag { tag, reason } => write!(f, "tag {tag:?} {reason}"),
            Self::InvalidDigest { digest, reason } => write!(f, "digest {digest:?} {reason}"),
            Self::UnsupportedDigest { algorithm } => {
                write!(f, "digest algorithm {algorithm:?} is not supported (sha256, sha384 or sha512)")
            }
        }
    }
}

impl Reference {
    /// Parse and normalise an image reference, as distribution/reference's
    /// `ParseNormalizedNamed` does: `busybox` is `docker.io/library/busybox`.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |kind| ParseError::new(input, kind);
        if input.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        if input.len() == 64 && input.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(err(ErrorKind::Identifier));
        }
        let (domain, remainder) = split_docker_domain(input);

        // The repository (up to the tag) must be lowercase: this is checked
        // before the grammar, for the clearer message.
        let repository = remainder.split_once(':').map_or(remainder.as_str(), |(repo, _)| repo);
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err(ErrorKind::Uppercase { repository: repository.to_owned() }));
        }
        check_domain(domain).map_err(|reason| err(ErrorKind::InvalidDomain { domain: domain.to_owned(), reason }))?;

        // Neither a path nor a tag has an '@', and a path has no ':'.
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((before, digest)) => (before, Some(digest)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_and_tag.split_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (name_and_tag, None),
        };
        check_path(path).map_err(err)?;
        if let Some(tag) = tag {
            check_tag(tag).map_err(|reason| err(ErrorKind::InvalidTag { tag: tag.to_owned(), reason }))?;
        }
        if let Some(digest) = digest {
            check_digest(digest).map_err(err)?;
        }
        Ok(Self {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The registry, `host[:port]`: `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry: `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `algorithm:hex`.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `:tag@digest`, `:tag`, `@digest` or nothing: what follows the name.
    pub fn suffix(&self) -> String {
        let mut out = String::new();
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }

    /// The reference as `docker` prints it: no `docker.io/`, no `library/`
    /// (but `docker.io/` is kept where the path's first segment would
    /// otherwise read as a registry, as in `docker.io/a.b/c`).
    pub fn familiar(&self) -> String {
        let name = if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX).filter(|rest| !rest.contains('/')) {
                Some(official) => official.to_owned(),
                None => match self.path.split_once('/') {
                    Some((first, _)) if first.contains('.') || first == LOCALHOST => self.name(),
                    _ => self.path.clone(),
                },
            }
        } else {
            self.name()
        };
        name + &self.suffix()
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, `docker.io/library/busybox:1.36`; parsing it
    /// gives the same reference back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A registry with an optional repository path prefix, such as `docker.io`,
/// `quay.io/prometheus` or `localhost:5000/team`: a set of repositories,
/// matched on whole path segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepositoryPrefix {
    domain: String,
    path: String,
}

impl RepositoryPrefix {
    /// Parse a prefix. The first segment must be a registry host (with a
    /// `.` or a `:port`, or `localhost`); `index.docker.io` is `docker.io`.
    /// The path, if any, is used as written: `docker.io/nginx` is the
    /// `nginx/` namespace, not the official image `docker.io/library/nginx`.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let err = |kind| ParseError::new(input, kind);
        if input.is_empty() {
            return Err(err(ErrorKind::Empty));
        }
        let (domain, path) = match input.split_once('/') {
            Some((domain, path)) => (domain, Some(path)),
            None => (input, None),
        };
        if !(domain == LOCALHOST || domain.contains(['.', ':'])) {
            return Err(err(ErrorKind::NotARegistry { segment: domain.to_owned() }));
        }
        check_domain(domain).map_err(|reason| err(ErrorKind::InvalidDomain { domain: domain.to_owned(), reason }))?;
        let domain = if domain == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN } else { domain };
        if let Some(path) = path {
            if path.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(err(ErrorKind::Uppercase { repository: path.to_owned() }));
            }
            check_path(path).map_err(err)?;
        }
        Ok(Self { domain: domain.to_owned(), path: path.unwrap_or_default().to_owned() })
    }

    /// The registry, `host[:port]`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path prefix; empty for a whole registry.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `reference` is under this prefix: the rest of its repository
    /// path after the prefix (empty if the prefix is the whole repository).
    /// Registries compare case-insensitively, as host names do.
    pub fn strip<'r>(&self, reference: &'r Reference) -> Option<&'r str> {
        if !reference.domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        if self.path.is_empty() {
            return Some(&reference.path);
        }
        let rest = reference.path.strip_prefix(&self.path)?;
        if rest.is_empty() { Some(rest) } else { rest.strip_prefix('/') }
    }

    /// Whether `reference` is under this prefix.
    pub fn contains(&self, reference: &Reference) -> bool {
        self.strip(reference).is_some()
    }
}

impl fmt::Display for RepositoryPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.domain)?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        Ok(())
    }
}

impl FromStr for RepositoryPrefix {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `splitDockerDomain`: the registry and the rest (path, tag, digest).
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, remainder) = match name.split_once('/') {
        // A single segment ("ubuntu", "ubuntu:22.04") is a Docker Hub name,
        // never "host:port".
        None => return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}")),
        Some((LOCALHOST, rest)) => (LOCALHOST, rest),
        Some((LEGACY_DEFAULT_DOMAIN, rest)) => (DEFAULT_DOMAIN, rest),
        Some((first, rest)) if first.contains(['.', ':']) || first.bytes().any(|b| b.is_ascii_uppercase()) => {
            (first, rest)
        }
        Some(_) => (DEFAULT_DOMAIN, name),
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        (domain, format!("{OFFICIAL_REPO_PREFIX}{remainder}"))
    } else {
        (domain, remainder.to_owned())
    }
}

/// `host[:port]`, host a DNS name or a bracketed IPv6 address.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    let port = if let Some(rest) = domain.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or("an IPv6 address must end with ']'")?;
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("an IPv6 address in brackets has only hex digits and ':'");
        }
        match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("only a :port may follow an IPv6 address"),
        }
    } else {
        let (host, port) = match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        };
        for label in host.split('.') {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (None, _) | (_, None) => {
                    return Err("a host name has no empty labels (no leading, trailing or double '.')");
                }
                (Some(first), Some(last)) if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() => {
                    return Err("each label of a host name starts and ends with a letter or digit");
                }
                _ => {}
            }
            if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
                return Err("a host name has only letters, digits, '-' and '.'");
            }
        }
        port
    };
    match port {
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => Err("the port must be a number"),
        _ => Ok(()),
    }
}

/// `path-component ['/' path-component]*`, at most 255 characters.
fn check_path(path: &str) -> Result<(), ErrorKind> {
    for component in path.split('/') {
        check_path_component(component)
            .map_err(|reason| ErrorKind::InvalidPathComponent { component: component.to_owned(), reason })?;
    }
    if path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ErrorKind::NameTooLong { length: path.len() });
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn check_path_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return Err("is empty (a path has no leading, trailing or double '/')");
    }
    let alphanumeric = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alphanumeric(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(if start == 0 {
                "must start with a lowercase letter or digit"
            } else {
                "has a separator not followed by a lowercase letter or digit (separators are '.', '_', '__' or dashes)"
            });
        }
        if i == bytes.len() {
            return Ok(());
        }
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return Err("may have only lowercase letters, digits and the separators '.', '_', '__' and '-'"),
        }
        if i == bytes.len() {
            return Err("must end with a lowercase letter or digit");
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        None => Err("is empty"),
        Some(first) if !word(first) => Err("must start with a letter, a digit or '_'"),
        _ if !bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-') => {
            Err("may have only letters, digits, '_', '.' and '-'")
        }
        _ if bytes.len() > TAG_LENGTH_MAX => Err("is longer than 128 characters"),
        _ => Ok(()),
    }
}

/// `algorithm:hex`, then go-digest's check of the known algorithms.
fn check_digest(digest: &str) -> Result<(), ErrorKind> {
    let invalid = |reason| ErrorKind::InvalidDigest { digest: digest.to_owned(), reason };
    let (algorithm, hex) =
        digest.split_once(':').ok_or_else(|| invalid("must be algorithm:hex, as sha256:<64 hex digits>"))?;
    let component_ok = |c: &str| {
        let mut bytes = c.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic()) && bytes.all(|b| b.is_ascii_alphanumeric())
    };
    if !algorithm.split(['+', '.', '_', '-']).all(component_ok) {
        return Err(invalid("has a malformed algorithm (letters and digits, starting with a letter)"));
    }
    if hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("must end in at least 32 hex digits"));
    }
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ErrorKind::UnsupportedDigest { algorithm: algorithm.to_owned() }),
    };
    if hex.len() != length {
        return Err(invalid(match algorithm {
            "sha256" => "must have 64 hex digits after sha256:",
            "sha384" => "must have 96 hex digits after sha384:",
            _ => "must have 128 hex digits after sha512:",
        }));
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid("must be lowercase hex"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (input, domain, path, tag, digest)
    fn ok(input: &str) -> Reference {
        Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    fn kind(input: &str) -> ErrorKind {
        match Reference::parse(input) {
            Ok(r) => panic!("{input} parsed as {r}"),
            Err(e) => e.kind,
        }
    }

    fn parts(r: &Reference) -> (&str, &str, Option<&str>, Option<&str>) {
        (r.domain(), r.path(), r.tag(), r.digest())
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(parts(&ok("busybox")), ("docker.io", "library/busybox", None, None));
        assert_eq!(parts(&ok("busybox:1.36")), ("docker.io", "library/busybox", Some("1.36"), None));
        assert_eq!(parts(&ok("docker.io/library/busybox")), ("docker.io", "library/busybox", None, None));
        assert_eq!(parts(&ok("docker.io/busybox")), ("docker.io", "library/busybox", None, None));
        assert_eq!(parts(&ok("index.docker.io/busybox")), ("docker.io", "library/busybox", None, None));
        assert_eq!(parts(&ok("index.docker.io/bitnami/kafka")), ("docker.io", "bitnami/kafka", None, None));
        assert_eq!(parts(&ok("bitnami/kafka:4.0.0")), ("docker.io", "bitnami/kafka", Some("4.0.0"), None));
        assert_eq!(
            parts(&ok("docker.io/bitnami/kafka:4.0.0-debian-12-r10")),
            ("docker.io", "bitnami/kafka", Some("4.0.0-debian-12-r10"), None)
        );
        assert_eq!(
            parts(&ok("apachepulsar/pulsar-all:4.0.12")),
            ("docker.io", "apachepulsar/pulsar-all", Some("4.0.12"), None)
        );
        // Three segments with a lowercase, dotless first one: still Docker Hub.
        assert_eq!(parts(&ok("a/b/c")), ("docker.io", "a/b/c", None, None));
        assert_eq!(ok("busybox:1.36").to_string(), "docker.io/library/busybox:1.36");
        assert_eq!(ok("busybox:1.36").familiar(), "busybox:1.36");
        assert_eq!(ok("docker.io/bitnami/kafka").familiar(), "bitnami/kafka");
    }

    #[test]
    fn registries_with_ports_and_localhost() {
        assert_eq!(parts(&ok("localhost:5000/foo")), ("localhost:5000", "foo", None, None));
        assert_eq!(parts(&ok("localhost/foo:bar")), ("localhost", "foo", Some("bar"), None));
        assert_eq!(parts(&ok("localhost:5000/foo/bar:1")), ("localhost:5000", "foo/bar", Some("1"), None));
        assert_eq!(parts(&ok("registry:5000/foo")), ("registry:5000", "foo", None, None));
        assert_eq!(
            parts(&ok("quay.io/prometheus/node-exporter:v1.9.1")),
            ("quay.io", "prometheus/node-exporter", Some("v1.9.1"), None)
        );
        assert_eq!(parts(&ok("192.168.1.1:5000/a")), ("192.168.1.1:5000", "a", None, None));
        assert_eq!(parts(&ok("[::1]:5000/a")), ("[::1]:5000", "a", None, None));
        assert_eq!(parts(&ok("[2001:db8::1]/a:t")), ("[2001:db8::1]", "a", Some("t"), None));
        assert_eq!(parts(&ok("my-registry.example.com/team/app")), ("my-registry.example.com", "team/app", None, None));
        // An uppercase first segment is a registry (repositories are lowercase).
        assert_eq!(parts(&ok("Registry/foo")), ("Registry", "foo", None, None));
        // Without a '/', "localhost:5000" is Docker Hub's localhost, tag 5000.
        assert_eq!(parts(&ok("localhost:5000")), ("docker.io", "library/localhost", Some("5000"), None));
        // No library/ on other registries.
        assert_eq!(parts(&ok("quay.io/busybox")), ("quay.io", "busybox", None, None));
    }

    #[test]
    fn tags_and_digests() {
        let both = format!("foo/bar:tag@sha256:{HEX64}");
        let expected_digest = format!("sha256:{HEX64}");
        assert_eq!(parts(&ok(&both)), ("docker.io", "foo/bar", Some("tag"), Some(expected_digest.as_str())));
        assert_eq!(ok(&both).to_string(), format!("docker.io/foo/bar:tag@sha256:{HEX64}"));
        assert_eq!(ok(&both).suffix(), format!(":tag@sha256:{HEX64}"));
        assert_eq!(parts(&ok(&format!("busybox@sha256:{HEX64}"))).3, Some(expected_digest.as_str()));
        assert_eq!(parts(&ok(&format!("localhost:5000/foo@sha256:{HEX64}"))).0, "localhost:5000");
        assert_eq!(ok(&format!("a@sha512:{}", "0".repeat(128))).digest().map(str::len), Some(135));
        assert_eq!(ok(&format!("a@sha384:{}", "a".repeat(96))).digest().map(str::len), Some(103));
        // Tags may have uppercase, '_' first, dots and dashes, up to 128.
        assert_eq!(ok("a:Latest_1.0-rc").tag(), Some("Latest_1.0-rc"));
        assert_eq!(ok("a:_x").tag(), Some("_x"));
        let long = "t".repeat(128);
        assert_eq!(ok(&format!("a:{long}")).tag(), Some(long.as_str()));
    }

    #[test]
    fn path_component_separators() {
        for good in ["a.b", "a_b", "a__b", "a-b", "a--b", "a---b", "a.b_c__d-e", "0", "a1/b2/c3", "foo.bar.baz"] {
            ok(good);
        }
        for bad in
            ["a..b", "a___b", "a._b", "a-.b", "-a", ".a", "_a", "a-", "a.", "a_", "a__", "a/", "/a", "a//b", "a$b"]
        {
            assert!(
                matches!(kind(bad), ErrorKind::InvalidPathComponent { .. } | ErrorKind::InvalidTag { .. }),
                "{bad}: {:?}",
                kind(bad)
            );
        }
    }

    #[test]
    fn invalid_references_say_why() {
        assert_eq!(kind(""), ErrorKind::Empty);
        assert_eq!(kind(HEX64), ErrorKind::Identifier);
        assert_eq!(kind("Busybox"), ErrorKind::Uppercase { repository: "library/Busybox".into() });
        assert_eq!(kind("bitnami/Kafka:1"), ErrorKind::Uppercase { repository: "bitnami/Kafka".into() });
        assert_eq!(kind("quay.io/Foo/bar"), ErrorKind::Uppercase { repository: "Foo/bar".into() });
        assert!(matches!(kind("localhost:/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("localhost:50a0/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("-bad.com/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("bad-.com/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("a..com/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("my_host.com/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("[::1/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("[zz]:5000/foo"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("a:"), ErrorKind::InvalidTag { reason: "is empty", .. }));
        assert!(matches!(kind("a:-x"), ErrorKind::InvalidTag { .. }));
        assert!(matches!(kind("a:.x"), ErrorKind::InvalidTag { .. }));
        assert!(matches!(kind("a:x/y"), ErrorKind::InvalidDomain { .. }));
        assert!(matches!(kind("a:x:y"), ErrorKind::InvalidTag { .. }));
        assert!(matches!(kind(&format!("a:{}", "t".repeat(129))), ErrorKind::InvalidTag { .. }));
        assert!(matches!(kind("a@"), ErrorKind::InvalidDigest { .. }));
        assert!(matches!(kind("a@sha256"), ErrorKind::InvalidDigest { .. }));
        assert!(matches!(kind("a@sha256:abc"), ErrorKind::InvalidDigest { .. }));
        assert!(matches!(kind(&format!("a@sha256:{}", &HEX64[..63])), ErrorKind::InvalidDigest { .. }));
        assert!(matches!(kind(&format!("a@sha256:{}", HEX64.to_uppercase())), ErrorKind::InvalidDigest { .. }));
        assert!(matches!(kind(&format!("a@1sha:{HEX64}")), ErrorKind::InvalidDigest { .. }));
        assert_eq!(kind(&format!("a@md5:{}", &HEX64[..32])), ErrorKind::UnsupportedDigest { algorithm: "md5".into() });
        assert!(matches!(kind(&format!("a@sha256:{HEX64}:tag")), ErrorKind::InvalidDigest { .. }));
        assert!(matches!(kind(&format!("a@sha256:{HEX64}@sha256:{HEX64}")), ErrorKind::InvalidDigest { .. }));
        // 255 characters of path are fine, 256 are not.
        let path = format!("a/{}", "b".repeat(253));
        assert_eq!(ok(&path).path().len(), 255);
        assert_eq!(kind(&format!("{path}b")), ErrorKind::NameTooLong { length: 256 });
        // The message names the input and the fault.
        let message = Reference::parse("bitnami/Kafka").unwrap_err().to_string();
        assert_eq!(message, r#"invalid reference "bitnami/Kafka": repository name "bitnami/Kafka" must be lowercase"#);
        let message = Reference::parse("foo/b..r").unwrap_err().to_string();
        assert!(message.contains(r#"path component "b..r""#), "{message}");
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "busybox",
            "busybox:1.36",
            "localhost:5000/foo/bar:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "Registry/foo",
            "[::1]:5000/a",
            "index.docker.io/x",
        ] {
            let r = ok(input);
            assert_eq!(ok(&r.to_string()), r, "{input}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let hub = RepositoryPrefix::parse("docker.io").unwrap();
        assert_eq!(hub.strip(&ok("busybox")), Some("library/busybox"));
        assert_eq!(hub.strip(&ok("bitnami/kafka")), Some("bitnami/kafka"));
        assert_eq!(hub.strip(&ok("quay.io/a")), None);
        let legacy = RepositoryPrefix::parse("index.docker.io/bitnami").unwrap();
        assert_eq!(legacy.to_string(), "docker.io/bitnami");
        assert_eq!(legacy.strip(&ok("bitnami/kafka:1")), Some("kafka"));
        assert_eq!(legacy.strip(&ok("bitnamilegacy/kafka")), None);
        let quay = RepositoryPrefix::parse("quay.io/prometheus").unwrap();
        assert_eq!(quay.strip(&ok("quay.io/prometheus/a/b")), Some("a/b"));
        assert_eq!(quay.strip(&ok("quay.io/prometheus")), Some(""));
        assert_eq!(quay.strip(&ok("quay.io/prometheus-x/a")), None);
        assert_eq!(quay.strip(&ok("QUAY.IO/prometheus/a")), Some("a"));
        assert!(RepositoryPrefix::parse("localhost:5000").unwrap().contains(&ok("localhost:5000/x")));
        assert!(!RepositoryPrefix::parse("localhost:5000").unwrap().contains(&ok("localhost/x")));
    }

    #[test]
    fn bad_prefixes_say_why() {
        let err = |s: &str| RepositoryPrefix::parse(s).unwrap_err().kind;
        assert_eq!(err(""), ErrorKind::Empty);
        assert_eq!(err("bitnami"), ErrorKind::NotARegistry { segment: "bitnami".into() });
        assert!(RepositoryPrefix::parse("bitnami").unwrap_err().to_string().contains("docker.io/bitnami"));
        assert!(matches!(err("quay.io/"), ErrorKind::InvalidPathComponent { .. }));
        assert!(matches!(err("quay.io/a:tag"), ErrorKind::InvalidPathComponent { .. }));
        assert!(matches!(err("quay.io/A"), ErrorKind::Uppercase { .. }));
        assert!(matches!(err("bad_host.io"), ErrorKind::InvalidDomain { .. }));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
    }

    fn domain() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some("docker.io".to_owned())),
            Just(Some("index.docker.io".to_owned())),
            Just(Some("localhost".to_owned())),
            Just(Some("[::1]:5000".to_owned())),
            "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z0-9]{1,5}){1,2}(:[0-9]{1,5})?".prop_map(Some),
            "localhost:[0-9]{1,5}".prop_map(Some),
        ]
    }

    prop_compose! {
        /// Any valid reference text, familiar or not.
        pub fn reference_text()(
            domain in domain(),
            path in prop::collection::vec(component(), 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            digest in proptest::option::of("[a-f0-9]{64}"),
        ) -> String {
            // Without a registry, a first segment with a '.' would be read
            // as one; give such paths Docker Hub explicitly.
            let domain = domain.or_else(|| path[0].contains('.').then(|| "docker.io".to_owned()));
            let mut out = domain.map(|d| format!("{d}/")).unwrap_or_default();
            out.push_str(&path.join("/"));
            if let Some(tag) = tag {
                out.push(':');
                out.push_str(&tag);
            }
            if let Some(digest) = digest {
                out.push_str("@sha256:");
                out.push_str(&digest);
            }
            out
        }
    }

    proptest! {
        #[test]
        fn parse_format_parse_round_trips(text in reference_text()) {
            let parsed = Reference::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = Reference::parse(&parsed.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&again, &parsed);
            prop_assert_eq!(again.to_string(), parsed.to_string());
            let familiar = Reference::parse(&parsed.familiar()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(familiar, parsed);
        }

        #[test]
        fn uppercase_repositories_are_refused(text in reference_text(), at in any::<prop::sample::Index>()) {
            let parsed = Reference::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let full = parsed.name();
            let start = full.len() - parsed.path().len();
            let i = start + at.index(parsed.path().len());
            if full.as_bytes()[i].is_ascii_lowercase() {
                let mut upper = full.clone().into_bytes();
                upper[i] = upper[i].to_ascii_uppercase();
                let upper = String::from_utf8(upper).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(Reference::parse(&upper).is_err(), "{} parsed", upper);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = Reference::parse(&text);
            let _ = RepositoryPrefix::parse(&text);
        }
    }
}

/// A prefix in settings is written as text and parsed when the settings are
/// read, so a bad one is reported with its field (`rules[0].from`).
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for RepositoryPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        RepositoryPrefix::parse(&text).map_err(serde::de::Error::custom)
    }
}
