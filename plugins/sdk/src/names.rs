//! Checks for Kubernetes names and labels, for settings that name objects
//! or labels.

/// A DNS subdomain (RFC 1123), as most Kubernetes object names are
/// (Secrets, StorageClasses, ...). The error says what is wrong.
pub fn check_dns_subdomain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("must have 1 to 253 characters");
    }
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !edge_ok(bytes.first()) || !edge_ok(bytes.last()) {
            return Err("each '.'-separated part must start and end with a lowercase letter or digit");
        }
        if !bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-') {
            return Err("may have only lowercase letters, digits, '-' and '.'");
        }
    }
    Ok(())
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of
/// 1 to 63 alphanumerics, `-`, `_` and `.`, alphanumeric at both ends.
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix).map_err(|_| "its prefix (before '/') must be a DNS subdomain")?;
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("must have a name (after any prefix)");
    }
    check_label_value(name)
        .map_err(|_| "its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end")
}

/// A label value: empty, or 1 to 63 alphanumerics, `-`, `_` and `.`,
/// alphanumeric at both ends.
pub fn check_label_value(value: &str) -> Result<(), &'static str> {
    let bytes = value.as_bytes();
    let inner_ok = bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = |b: Option<&u8>| b.is_none_or(u8::is_ascii_alphanumeric);
    if bytes.len() > 63 || !inner_ok || !ends_ok(bytes.first()) || !ends_ok(bytes.last()) {
        return Err("must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_subdomains() {
        for good in ["regsecret", "local-storage", "a.b-c.d", "0x"] {
            assert_eq!(check_dns_subdomain(good), Ok(()), "{good}");
        }
        for bad in ["", "Reg", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in ["app", "example.com/checked", "a.b/C_d-1", &"k".repeat(63)] {
            assert_eq!(check_label_key(good), Ok(()), "{good}");
        }
        for bad in ["", "/x", "Ex.com/x", "a/", "-a", "a b", &"k".repeat(64), "a/b/c"] {
            assert!(check_label_key(bad).is_err(), "{bad}");
        }
        for good in ["", "true", "v1.2_3-x"] {
            assert_eq!(check_label_value(good), Ok(()), "{good}");
        }
        for bad in ["-x", "x.", "a b", &"v".repeat(64)] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
    }
}
