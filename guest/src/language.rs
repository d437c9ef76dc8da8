//! Pattern dialects: how a policy's `tag_pattern` is checked and turned into
//! the full-match regular expression the matcher compiles.
//!
//! Everything around the dialect is shared by every plugin built on this
//! crate: trimming, the length limit, duplicate and scope checks, tag-name
//! checks, matching with inversion, decisions and records.

use crate::model::PolicyError;
use regex_syntax::ast::ErrorKind;

/// A tag pattern dialect: validates a pattern and translates it to regex source.
pub trait PatternLanguage: 'static {
    /// Name reported by `info` for the plugin that uses this dialect.
    const PLUGIN_NAME: &'static str;

    /// Checks a trimmed, non-empty pattern of at most 256 characters.
    ///
    /// The default accepts every pattern that [`Self::full_match_source`]
    /// translates; the translated source is compiled afterwards either way.
    fn validate(trimmed: &str) -> Result<(), PolicyError> {
        Self::full_match_source(trimmed)
            .map(drop)
            .map_err(PolicyError::InvalidPattern)
    }

    /// Regex source that matches exactly the whole tag names `pattern` matches.
    fn full_match_source(pattern: &str) -> Result<String, String>;

    /// Compiles the full-match sources of a policy set within a compile size budget.
    /// The default builds one `regex::RegexSet`, which matches in linear time.
    fn compile_set(
        sources: Vec<String>,
        size_limit: usize,
    ) -> Result<Box<dyn CompiledSet>, String> {
        regex::RegexSetBuilder::new(sources)
            .size_limit(size_limit)
            .build()
            .map(|set| Box::new(set) as Box<dyn CompiledSet>)
            .map_err(|e| e.to_string())
    }
}

/// A compiled policy set: which of its patterns match a tag name in full.
pub trait CompiledSet {
    /// Pushes, for each pattern in order, whether it matched `tag`. A pattern whose
    /// matching ran out of its step budget counts as not matched, and its index is
    /// also pushed to `exceeded`.
    fn evaluate(&self, tag: &str, matched: &mut Vec<bool>, exceeded: &mut Vec<usize>);
}

impl CompiledSet for regex::RegexSet {
    /// Linear-time matching: no budget to exceed.
    fn evaluate(&self, tag: &str, matched: &mut Vec<bool>, _exceeded: &mut Vec<usize>) {
        let found = self.matches(tag);
        matched.extend((0..self.len()).map(|i| found.matched(i)));
    }
}

/// An unsupported construct at byte offset `byte` of `pattern`, positioned in characters.
fn unsupported(pattern: &str, construct: String, byte: usize) -> PolicyError {
    let byte = byte.min(pattern.len());
    let position = pattern.get(..byte).map_or(0, |p| p.chars().count());
    PolicyError::UnsupportedConstruct {
        construct,
        position: u32::try_from(position).unwrap_or(u32::MAX),
    }
}

/// The default dialect: Rust `regex` syntax without look-around or
/// backreferences, and without the constructs Quay reads differently, matched
/// against the whole tag name.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegexLanguage;

impl PatternLanguage for RegexLanguage {
    const PLUGIN_NAME: &'static str = "tagguard-default";

    /// Parses the pattern and names a look-around, a backreference, or a construct
    /// that Quay's Python `regex` reads differently ([`crate::fidelity`]), with its
    /// position.
    fn validate(trimmed: &str) -> Result<(), PolicyError> {
        let err = match regex_syntax::ast::parse::Parser::new().parse(trimmed) {
            Ok(ast) => {
                return match crate::fidelity::first_divergence(&ast, trimmed) {
                    None => Ok(()),
                    Some(d) => Err(unsupported(trimmed, d.construct, d.offset)),
                };
            }
            Err(err) => err,
        };
        let construct = match err.kind() {
            ErrorKind::UnsupportedLookAround => "look-around",
            ErrorKind::UnsupportedBackreference => "backreference",
            _ => return Err(PolicyError::InvalidPattern(err.to_string())),
        };
        Err(unsupported(
            trimmed,
            construct.to_string(),
            err.span().start.offset,
        ))
    }

    /// The pattern wrapped so that it must match the whole tag name. The pattern is
    /// parsed and printed back first, which drops `(?x)` comments and insignificant
    /// white space: a comment would otherwise swallow the wrapper's closing `)$`.
    fn full_match_source(pattern: &str) -> Result<String, String> {
        let ast = regex_syntax::ast::parse::Parser::new()
            .parse(pattern)
            .map_err(|e| e.to_string())?;
        let mut body = String::with_capacity(pattern.len());
        regex_syntax::ast::print::Printer::new()
            .print(&ast, &mut body)
            .map_err(|e| e.to_string())?;
        Ok(format!("^(?:{body})$"))
    }
}
