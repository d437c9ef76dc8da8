//! Quay's pattern dialect, as far as a backtracking Rust engine can follow it.
//!
//! Quay matches with Python's `regex` module: `regex.fullmatch(pattern, tag)`
//! under a timeout. This dialect compiles the pattern with `fancy-regex`,
//! which adds look-around, backreferences, atomic groups and possessive
//! quantifiers to Rust `regex` syntax, and runs each match under a budget of
//! backtracking steps instead of a clock, so the outcome does not depend on
//! the machine's load.
//!
//! Refused, because Quay would read them differently: class set operations
//! (`&&`, `--`, `~~` inside a class), nested classes, `\<`, `\>`, `\b{...}`,
//! `\h`, counted repetitions with spaces, non-ASCII characters under
//! case-insensitive matching, and the verbose flag `x` (its comments would
//! swallow the full-match wrapper). `tests/python_regex.rs` holds the rest to
//! Python's answers. Not ReDoS-immune:
//! a pattern with look-around or backreferences can take exponential time,
//! and the budget is what bounds it.

use tagguard_guest::language::{CompiledSet, PatternLanguage};
use tagguard_guest::model::PolicyError;

/// Backtracking steps one pattern may take to match one tag.
pub const MATCH_STEP_BUDGET: usize = 100_000;

/// The Quay-compatible dialect of the `tagguard-quay-compat` plugin.
#[derive(Clone, Copy, Debug, Default)]
pub struct QuayLanguage;

impl PatternLanguage for QuayLanguage {
    const PLUGIN_NAME: &'static str = "tagguard-quay-compat";

    /// Refuses what Quay reads differently, then compiles the pattern. A pattern
    /// without look-around or backreferences gets the default plugin's checks
    /// (possessive quantifiers aside, which this engine reads as Quay does); any
    /// other gets the lexical ones of [`refused`].
    fn validate(trimmed: &str) -> Result<(), PolicyError> {
        let found = match regex_syntax::ast::parse::Parser::new().parse(trimmed) {
            Ok(ast) => tagguard_guest::fidelity::divergences(&ast, trimmed)
                .into_iter()
                .find(|d| !d.possessive)
                .map(|d| (d.construct, d.offset)),
            Err(_) => None,
        };
        if let Some((construct, byte)) = found.or_else(|| refused(trimmed)) {
            return Err(PolicyError::UnsupportedConstruct {
                construct,
                position: u32::try_from(trimmed[..byte].chars().count()).unwrap_or(u32::MAX),
            });
        }
        compile(&Self::full_match_source(trimmed).map_err(PolicyError::InvalidPattern)?)
            .map(drop)
            .map_err(PolicyError::InvalidPattern)
    }

    /// The pattern in a non-capturing group between anchors: group numbers, and so
    /// backreferences, stay as written.
    fn full_match_source(pattern: &str) -> Result<String, String> {
        Ok(format!("^(?:{pattern})$"))
    }

    /// One backtracking matcher per pattern, each under [`MATCH_STEP_BUDGET`].
    fn compile_set(
        sources: Vec<String>,
        _size_limit: usize,
    ) -> Result<Box<dyn CompiledSet>, String> {
        let patterns = sources
            .iter()
            .map(|s| compile(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(BudgetedSet { patterns }))
    }
}

fn compile(source: &str) -> Result<fancy_regex::Regex, String> {
    fancy_regex::RegexBuilder::new(source)
        .backtrack_limit(MATCH_STEP_BUDGET)
        .build()
        .map_err(|e| e.to_string())
}

/// Compiled patterns matched one by one, each under the step budget.
struct BudgetedSet {
    patterns: Vec<fancy_regex::Regex>,
}

impl CompiledSet for BudgetedSet {
    /// A match that fails at run time (the step budget, or the engine's own limits)
    /// counts as not matched and is reported in `exceeded`.
    fn evaluate(&self, tag: &str, matched: &mut Vec<bool>, exceeded: &mut Vec<usize>) {
        for (i, re) in self.patterns.iter().enumerate() {
            match re.is_match(tag) {
                Ok(m) => matched.push(m),
                Err(_) => {
                    matched.push(false);
                    exceeded.push(i);
                }
            }
        }
    }
}

/// What an escape means in Quay when fancy-regex reads it otherwise.
fn escape_divergence(pattern: &str, at: usize) -> Option<String> {
    let rest = &pattern[at..];
    if rest.starts_with("\\<") || rest.starts_with("\\>") {
        return Some(format!(
            "word-boundary assertion `{}` (in Quay's Python `regex` it is a literal `{}`)",
            &rest[..2],
            &rest[1..2]
        ));
    }
    if rest.starts_with("\\b{") {
        return Some(
            "word-boundary assertion `\\b{...}` (Quay's Python `regex` has no such assertion \
             and refuses it)"
                .into(),
        );
    }
    if rest.starts_with("\\h") || rest.starts_with("\\H") {
        return Some(format!(
            "escape `{}` (a hex digit here; in Quay's Python `regex` `\\h` is horizontal white \
             space and `\\H` is refused)",
            &rest[..2]
        ));
    }
    None
}

/// A counted repetition with spaces, such as `{ 1 }`, at `at` (a `{`): literal text in
/// Quay's Python `regex`.
fn spaced_repetition(pattern: &str, at: usize) -> Option<String> {
    let body = pattern[at + 1..].split('}').next()?;
    let counted = body
        .chars()
        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ');
    (pattern[at + 1..].contains('}')
        && counted
        && body.contains(' ')
        && body.chars().any(|c| c.is_ascii_digit()))
    .then(|| {
        format!(
            "counted repetition with spaces `{{{body}}}` (in Quay's Python `regex` it is literal \
             text, not a repetition)"
        )
    })
}

/// Whether a flag group turns case-insensitive matching on anywhere in `pattern`.
fn sets_case_insensitive(pattern: &str) -> bool {
    pattern.match_indices("(?").any(|(i, _)| {
        let flags: String = pattern[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == '-')
            .collect();
        flags.split('-').next().unwrap_or("").contains('i')
    })
}

/// The first construct Quay reads differently, with its byte offset: class set
/// operations and nested classes (plain characters in Python's `regex`), escapes
/// fancy-regex reads otherwise (`\<`, `\>`, `\b{...}`, `\h`), counted repetitions
/// with spaces, non-ASCII characters under case-insensitive matching, and the
/// verbose flag.
pub fn refused(pattern: &str) -> Option<(String, usize)> {
    if sets_case_insensitive(pattern)
        && let Some((at, c)) = pattern.char_indices().find(|(_, c)| !c.is_ascii())
    {
        return Some((
            format!(
                "non-ASCII character `{c}` under case-insensitive matching (Quay's Python \
                 `regex` folds case by other rules)"
            ),
            at,
        ));
    }
    let bytes = pattern.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            if let Some(construct) = escape_divergence(pattern, i) {
                return Some((construct, i));
            }
            i += 1 + pattern[i + 1..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if !in_class
            && b == b'{'
            && let Some(construct) = spaced_repetition(pattern, i)
        {
            return Some((construct, i));
        }
        if in_class {
            let first = i == class_start;
            match b {
                b']' if !first => in_class = false,
                b'[' if bytes.get(i + 1) == Some(&b':') => {
                    if let Some(end) = pattern[i..].find(":]") {
                        i += end + 2;
                        continue;
                    }
                }
                b'[' => {
                    return Some((
                        "nested class `[` (in Quay's Python `regex` a `[` inside a class is a \
                         plain `[`, and the first `]` closes the class)"
                            .into(),
                        i,
                    ));
                }
                b'&' | b'-' | b'~' if bytes.get(i + 1) == Some(&b) => {
                    let op = &pattern[i..i + 2];
                    return Some((
                        format!(
                            "class set operation `{op}` (a set operation in Rust syntax; in \
                             Quay's Python `regex` two plain `{}` characters of the class)",
                            &op[..1]
                        ),
                        i,
                    ));
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'[' => {
                in_class = true;
                i += 1;
                if bytes.get(i) == Some(&b'^') {
                    i += 1;
                }
                class_start = i;
                continue;
            }
            b'(' if bytes.get(i + 1) == Some(&b'?') => {
                let flags: String = pattern[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic() || *c == '-')
                    .collect();
                let on = flags.split('-').next().unwrap_or("");
                let closes = matches!(
                    pattern[i + 2 + flags.len()..].chars().next(),
                    Some(')' | ':')
                );
                if closes && on.contains('x') {
                    return Some((
                        "verbose flag `x` (its comments would swallow the full-match wrapper; \
                         write the pattern without them)"
                            .into(),
                        i,
                    ));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}
