//! Harbor-style tag globs, translated to full-match regular expressions.
//!
//! Grammar (the whole tag name must match; positions are zero-based
//! character offsets in the trimmed pattern):
//!
//! - `*` matches any run of characters, including none. Tags never contain
//!   `/`, so `**` (any run of stars) means the same.
//! - `?` matches exactly one character.
//! - `{a,b,c}` matches any one of the comma-separated alternatives, which may
//!   use `*`, `?` and escapes. Alternatives may be empty: `v1{,-rc}` matches
//!   `v1` and `v1-rc`, and `{}` matches the empty string. Braces do not nest.
//! - `\x` matches the character `x` literally; a trailing lone `\` is an error.
//! - Every other character is literal, regex metacharacters included
//!   (`.`, `+`, `(`, `$`, `^`, `|`, `[`, ...); a `,` outside braces too.
//!   A `}` outside braces is an error: write `\}` for a literal one.

use tagguard_guest::language::PatternLanguage;

/// The Harbor-style glob dialect of the `tagguard-glob` plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobLanguage;

impl PatternLanguage for GlobLanguage {
    const PLUGIN_NAME: &'static str = "tagguard-glob";

    /// The glob translated and anchored; `.` also matches a newline.
    fn full_match_source(pattern: &str) -> Result<String, String> {
        glob_to_regex(pattern).map(|body| format!("^(?s:{body})$"))
    }
}

/// Translates a glob to unanchored regex source, or says what is wrong and where.
pub fn glob_to_regex(glob: &str) -> Result<String, String> {
    let mut out = String::with_capacity(glob.len() * 2);
    let mut open_brace = None;
    let mut chars = glob.chars().enumerate().peekable();
    while let Some((position, c)) = chars.next() {
        match c {
            '*' => {
                while chars.next_if(|&(_, next)| next == '*').is_some() {}
                out.push_str(".*");
            }
            '?' => out.push('.'),
            '{' if open_brace.is_some() => {
                return Err(format!("nested '{{' at position {position}"));
            }
            '{' => {
                open_brace = Some(position);
                out.push_str("(?:");
            }
            ',' if open_brace.is_some() => out.push('|'),
            '}' => {
                if open_brace.take().is_none() {
                    return Err(format!("unmatched '}}' at position {position}"));
                }
                out.push(')');
            }
            '\\' => {
                let Some((_, escaped)) = chars.next() else {
                    return Err(format!("trailing '\\' at position {position}"));
                };
                push_literal(&mut out, escaped);
            }
            literal => push_literal(&mut out, literal),
        }
    }
    match open_brace {
        Some(position) => Err(format!("unclosed '{{' at position {position}")),
        None => Ok(out),
    }
}

/// Appends `c` to regex source so that it matches only itself.
fn push_literal(out: &mut String, c: char) {
    out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagguard_guest::matcher::Matcher;
    use tagguard_guest::model::{Policy, PolicyError, Scope};
    use tagguard_guest::pattern::{MAX_PATTERN_CHARS, compile_full, validate_pattern};
    use tagguard_guest::policies::validate_policy;

    fn validate(raw: &str) -> Result<String, PolicyError> {
        validate_pattern::<GlobLanguage>(raw)
    }

    /// Asserts which of `tags` the glob matches in full.
    fn check(glob: &str, matching: &[&str], not_matching: &[&str]) {
        let trimmed = validate(glob).unwrap();
        let re = compile_full::<GlobLanguage>(&trimmed).unwrap();
        for tag in matching {
            assert!(re.is_match(tag), "{glob:?} should match {tag:?}");
        }
        for tag in not_matching {
            assert!(!re.is_match(tag), "{glob:?} should not match {tag:?}");
        }
    }

    fn invalid(glob: &str) -> String {
        match validate(glob) {
            Err(PolicyError::InvalidPattern(msg)) => msg,
            other => panic!("{glob:?}: unexpected {other:?}"),
        }
    }

    fn policy(uuid: &str, pattern: &str, matches: bool) -> Policy {
        Policy {
            uuid: uuid.into(),
            scope: Scope::Namespace,
            namespace: "org".into(),
            repository: None,
            tag_pattern: pattern.into(),
            tag_pattern_matches: matches,
        }
    }

    #[test]
    fn star_matches_any_run_of_characters() {
        check("v*", &["v1", "v1.2.3", "v", "v-rc_1"], &["av1", "V1", ""]);
        check("*-rc", &["1.0-rc", "-rc"], &["1.0-rc1"]);
    }

    #[test]
    fn double_star_is_any_run_of_characters_too() {
        check("**", &["latest", "v1.2.3", "_"], &[]);
        check("v**-rc", &["v1.2-rc", "v-rc"], &["v1.2-rc2"]);
        check("a***b", &["ab", "a.x.b"], &["ba"]);
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        check(
            "release-?",
            &["release-1", "release-a"],
            &["release-10", "release-"],
        );
    }

    #[test]
    fn braces_are_alternatives_matched_in_full() {
        check(
            "{latest,stable}",
            &["latest", "stable"],
            &["latest2", "stable-1", "latest,stable"],
        );
        check("v{1,2}.*", &["v1.0", "v2.3.4"], &["v3.0", "v12.0"]);
        check("{v*,release-?}", &["v9", "release-1"], &["release-12"]);
    }

    #[test]
    fn empty_alternatives_are_allowed() {
        check("v1{,-rc}", &["v1", "v1-rc"], &["v1-"]);
        check("x{}", &["x"], &["xy"]);
    }

    #[test]
    fn regex_metacharacters_are_literal() {
        check("v1.*", &["v1.2", "v1.", "v1.2.3"], &["v1x2", "v12"]);
        check("a+b", &["a+b"], &["aab", "ab"]);
        check("(x)|^y$[z]", &["(x)|^y$[z]"], &["x", "y"]);
        check("a,b", &["a,b"], &["a", "b"]);
    }

    #[test]
    fn escapes_make_special_characters_literal() {
        check(r"v\*", &["v*"], &["v1", "v"]);
        check(r"\{a\}\?\\", &[r"{a}?\"], &["a"]);
    }

    #[test]
    fn invalid_globs_name_the_error_and_its_position() {
        assert_eq!(invalid("v{a,b"), "unclosed '{' at position 1");
        assert_eq!(
            invalid("  ab{x"),
            "unclosed '{' at position 2",
            "after trimming"
        );
        assert_eq!(invalid("{a,{b}}"), "nested '{' at position 3");
        assert_eq!(invalid("v1}"), "unmatched '}' at position 2");
        assert_eq!(invalid(r"v1\"), r"trailing '\' at position 2");
        assert_eq!(
            validate("{x").unwrap_err().to_string(),
            "tag-pattern: does not compile: unclosed '{' at position 0"
        );
    }

    #[test]
    fn shared_limits_apply_after_trimming() {
        assert_eq!(validate("  v*  ").unwrap(), "v*");
        assert_eq!(validate(" \t "), Err(PolicyError::EmptyPattern));
        assert!(validate(&"*".repeat(MAX_PATTERN_CHARS)).is_ok());
        assert_eq!(
            validate(&"?".repeat(MAX_PATTERN_CHARS + 1)),
            Err(PolicyError::PatternTooLong(257))
        );
    }

    #[test]
    fn or_over_policies_with_inversion() {
        let mut m = Matcher::<GlobLanguage>::default();
        let ps = [
            policy("release", "release-*", true),
            policy("not-dev", "dev-*", false),
            policy("latest", "{latest,stable}", true),
        ];
        assert!(!m.any_fires("dev-x", &ps).unwrap());
        assert_eq!(m.firing_indices("release-1", &ps).unwrap(), [0, 1]);
        assert_eq!(m.firing_indices("stable", &ps).unwrap(), [1, 2]);
        let why = m.explain("release-1", &ps).unwrap();
        assert!(why[0].pattern_matched && !why[1].pattern_matched);
    }

    #[test]
    fn policy_validation_is_shared_with_the_default_plugin() {
        let existing = [policy("old", "v*", true)];
        assert_eq!(
            validate_policy::<GlobLanguage>(&policy("new", "  v*  ", false), &existing),
            Err(PolicyError::DuplicatePattern("old".into()))
        );
        let ok = validate_policy::<GlobLanguage>(&policy("new", " release-? ", true), &existing);
        assert_eq!(ok.unwrap().tag_pattern, "release-?");
        assert!(matches!(
            validate_policy::<GlobLanguage>(&policy("new", "{a", true), &existing),
            Err(PolicyError::InvalidPattern(_))
        ));
    }
}
