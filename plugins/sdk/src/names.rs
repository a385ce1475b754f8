//! Checks for Kubernetes names, for settings that name objects.

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
}
