//! Namespace and repository names: the OCI distribution rule, as Quay applies
//! it. A name component is lowercase letters and digits, separated by `.`,
//! `_`, `__` or a run of `-`; a namespace is one component, a repository one
//! or more joined by `/`.

/// Longest namespace or repository name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

fn alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Whether `c` is one OCI name component.
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

const RULE: &str =
    "lowercase letters and digits, separated by '.', '_', '__' or '-' (the OCI name rule)";

/// Checks a namespace name; says why it is rejected.
pub fn check_namespace(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{} bytes, at most {MAX_NAME_BYTES} allowed",
            name.len()
        ));
    }
    if component_ok(name) {
        Ok(())
    } else {
        Err(format!("{name:?} must be {RULE}"))
    }
}

/// Checks a repository name (one or more components joined by `/`); says why it is rejected.
pub fn check_repository(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{} bytes, at most {MAX_NAME_BYTES} allowed",
            name.len()
        ));
    }
    if name.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be one or more components of {RULE}, joined by '/'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_oci_names() {
        for ok in [
            "org",
            "a",
            "my-org",
            "my--org",
            "my_org",
            "my__org",
            "v1.2",
            "tagguard-self-test",
        ] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for ok in ["app", "team/app", "a/b/c", "web.frontend"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_other_names_with_the_reason() {
        for bad in [
            "", "Org", "org/app", "-org", "org-", "a___b", "a._b", "ä", "a b",
        ] {
            let err = check_namespace(bad).unwrap_err();
            assert!(err.contains("OCI name rule"), "{bad}: {err}");
        }
        for bad in ["", "App", "team//app", "/app", "app/", "a..b"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(
            check_namespace(&"a".repeat(256))
                .unwrap_err()
                .contains("at most 255")
        );
    }
}
