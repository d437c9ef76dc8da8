//! Tag patterns and tag names: the checks every dialect shares (trimming,
//! length, compilation), and the OCI tag name rule.

use crate::language::PatternLanguage;
use crate::model::PolicyError;

/// Longest pattern accepted, in characters after trimming.
pub const MAX_PATTERN_CHARS: usize = 256;

/// Compile size budget of one pattern (the `regex` default).
pub const COMPILE_SIZE_LIMIT: usize = 10 << 20;

/// Longest tag name the OCI distribution spec allows.
pub const MAX_TAG_CHARS: usize = 128;

/// Trims `raw` and checks what every dialect shares (not empty, at most 256
/// characters) and the dialect's own syntax; returns the trimmed text. It does not
/// compile the pattern: [`validate_pattern`] does.
pub fn checked_syntax<L: PatternLanguage>(raw: &str) -> Result<&str, PolicyError> {
    let pattern = raw.trim();
    if pattern.is_empty() {
        return Err(PolicyError::EmptyPattern);
    }
    let chars = pattern.chars().count();
    if chars > MAX_PATTERN_CHARS {
        return Err(PolicyError::PatternTooLong(
            u32::try_from(chars).unwrap_or(u32::MAX),
        ));
    }
    L::validate(pattern)?;
    Ok(pattern)
}

/// Trims `raw` and checks it is a valid pattern of dialect `L`, compiling it; returns
/// the trimmed text.
pub fn validate_pattern<L: PatternLanguage>(raw: &str) -> Result<String, PolicyError> {
    let pattern = checked_syntax::<L>(raw)?;
    let source = L::full_match_source(pattern).map_err(PolicyError::InvalidPattern)?;
    L::compile_set(vec![source], COMPILE_SIZE_LIMIT).map_err(PolicyError::InvalidPattern)?;
    Ok(pattern.to_string())
}

/// Compiles one pattern of a `regex`-based dialect `L` with full-match semantics.
pub fn compile_full<L: PatternLanguage>(pattern: &str) -> Result<regex::Regex, String> {
    let source = L::full_match_source(pattern)?;
    regex::Regex::new(&source).map_err(|e| e.to_string())
}

/// Whether `name` follows the OCI rule `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= MAX_TAG_CHARS
        && (first.is_ascii_alphanumeric() || first == b'_')
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a tag name and says why it is rejected.
pub fn check_tag_name(name: &str) -> Result<(), String> {
    if is_valid_tag_name(name) {
        Ok(())
    } else if name.is_empty() {
        Err("tag name: must not be empty".to_string())
    } else if name.len() > MAX_TAG_CHARS {
        Err(format!(
            "tag name: {} characters, at most {MAX_TAG_CHARS} allowed",
            name.chars().count()
        ))
    } else {
        Err(format!(
            "tag name {name:?}: must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::language::RegexLanguage;

    fn validate_pattern(raw: &str) -> Result<String, PolicyError> {
        super::validate_pattern::<RegexLanguage>(raw)
    }

    fn compile_full(pattern: &str) -> Result<regex::Regex, String> {
        super::compile_full::<RegexLanguage>(pattern)
    }

    #[test]
    fn trims_and_accepts_a_semver_pattern() {
        let p = validate_pattern("  ^v[0-9]+\\.[0-9]+\\.[0-9]+$ \n").unwrap();
        assert_eq!(p, "^v[0-9]+\\.[0-9]+\\.[0-9]+$");
    }

    #[test]
    fn accepts_256_characters_and_rejects_257() {
        assert!(validate_pattern(&"a".repeat(256)).is_ok());
        assert_eq!(
            validate_pattern(&"a".repeat(257)),
            Err(PolicyError::PatternTooLong(257))
        );
    }

    #[test]
    fn length_is_counted_after_trimming_in_characters() {
        let padded = format!("   {}   ", "é".repeat(256));
        assert!(validate_pattern(&padded).is_ok());
    }

    #[test]
    fn rejects_empty_and_whitespace_only() {
        assert_eq!(validate_pattern(""), Err(PolicyError::EmptyPattern));
        assert_eq!(validate_pattern(" \t\n "), Err(PolicyError::EmptyPattern));
    }

    #[test]
    fn names_look_ahead_and_look_behind_with_their_position() {
        assert_eq!(
            validate_pattern("v1(?=beta)"),
            Err(PolicyError::UnsupportedConstruct {
                construct: "look-around".into(),
                position: 2
            })
        );
        assert_eq!(
            validate_pattern("  ab(?<!x)c"),
            Err(PolicyError::UnsupportedConstruct {
                construct: "look-around".into(),
                position: 2
            })
        );
        assert_eq!(
            validate_pattern("(?!dev).*"),
            Err(PolicyError::UnsupportedConstruct {
                construct: "look-around".into(),
                position: 0
            })
        );
    }

    #[test]
    fn names_backreferences_with_their_position() {
        assert_eq!(
            validate_pattern("(a)b\\1"),
            Err(PolicyError::UnsupportedConstruct {
                construct: "backreference".into(),
                position: 4
            })
        );
    }

    /// The construct named in the error for `pattern`, and its position.
    fn refused(pattern: &str) -> (String, u32) {
        match validate_pattern(pattern) {
            Err(PolicyError::UnsupportedConstruct {
                construct,
                position,
            }) => (construct, position),
            other => panic!("{pattern:?}: expected an unsupported construct, got {other:?}"),
        }
    }

    #[test]
    fn names_possessive_quantifiers_and_says_what_they_mean_in_quay() {
        for (pattern, written, position) in [
            ("a++a", "++", 1),
            ("a*+", "*+", 1),
            ("xa?+", "?+", 2),
            ("a{2}+", "{2}+", 1),
        ] {
            let (construct, at) = refused(pattern);
            assert!(
                construct.starts_with(&format!("possessive quantifier `{written}`")),
                "{construct}"
            );
            assert!(construct.contains("Quay's Python `regex`"), "{construct}");
            assert_eq!(at, position, "{pattern}");
        }
        let (construct, _) = refused("a+*");
        assert!(
            construct.starts_with("stacked quantifier `+*`"),
            "{construct}"
        );
    }

    #[test]
    fn names_class_set_operations_and_nested_classes() {
        for (pattern, op, position) in [
            ("[a-z&&b]", "&&", 4),
            ("[a-z--b]", "--", 4),
            ("x[a~~b]", "~~", 3),
        ] {
            let (construct, at) = refused(pattern);
            assert!(
                construct.starts_with(&format!("class set operation `{op}`")),
                "{construct}"
            );
            assert!(construct.contains("plain"), "{construct}");
            assert_eq!(at, position, "{pattern}");
        }
        let (construct, at) = refused("[a[b]]");
        assert!(construct.starts_with("nested class"), "{construct}");
        assert_eq!(at, 2);
        assert!(
            validate_pattern("[[:alpha:]_-]+").is_ok(),
            "a POSIX class is not nested"
        );
    }

    #[test]
    fn names_the_other_constructs_quay_reads_differently() {
        assert!(
            refused("\\<v1")
                .0
                .starts_with("word-boundary assertion `\\<`")
        );
        assert!(
            refused("v1\\b{end}")
                .0
                .starts_with("word-boundary assertion `\\b{end}`")
        );
        assert!(
            refused("a{ 1 }")
                .0
                .starts_with("counted repetition with spaces")
        );
        assert!(
            refused("a{1, 2}")
                .0
                .starts_with("counted repetition with spaces")
        );
        let (construct, at) = refused("(?i)v\u{130}");
        assert!(construct.starts_with("non-ASCII character"), "{construct}");
        assert_eq!(at, 5);
        assert!(
            refused("(?i:[\u{100}-\u{200}])")
                .0
                .starts_with("non-ASCII character")
        );
        // Without case folding a non-ASCII literal matches no tag in either engine.
        assert!(validate_pattern("v\u{130}").is_ok());
        // Lazy quantifiers and plain counted repetitions mean the same in both.
        for ok in ["a+?", "a*?b", "a{2}?", "a{1,2}", "(a+)+", "(?i)v[0-9]+"] {
            assert!(validate_pattern(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_a_pattern_that_does_not_compile() {
        match validate_pattern("v[0-9") {
            Err(PolicyError::InvalidPattern(msg)) => assert!(msg.contains("unclosed"), "{msg}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            validate_pattern("a{5,2}"),
            Err(PolicyError::InvalidPattern(_))
        ));
    }

    #[test]
    fn nested_quantifiers_are_linear_and_correct() {
        let re = compile_full("(a+)+b").unwrap();
        assert!(!re.is_match(&"a".repeat(30)));
        assert!(re.is_match(&format!("{}b", "a".repeat(30))));
    }

    #[test]
    fn full_match_not_prefix_match() {
        let re = compile_full("v1").unwrap();
        assert!(re.is_match("v1"));
        assert!(!re.is_match("v10"));
        assert!(!re.is_match("xv1"));
        let alt = compile_full("a|b").unwrap();
        assert!(alt.is_match("a") && alt.is_match("b") && !alt.is_match("ab"));
    }

    #[test]
    fn oci_tag_names() {
        for ok in ["latest", "v1.0.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(is_valid_tag_name(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a b", "ä", &"a".repeat(129)] {
            assert!(!is_valid_tag_name(bad), "{bad}");
            assert!(check_tag_name(bad).unwrap_err().starts_with("tag name"));
        }
    }
}
