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
}

/// The default dialect: Rust `regex` syntax without look-around or
/// backreferences, matched against the whole tag name.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegexLanguage;

impl PatternLanguage for RegexLanguage {
    const PLUGIN_NAME: &'static str = "tagguard-default";

    /// Parses the pattern and names a look-around or backreference with its position.
    fn validate(trimmed: &str) -> Result<(), PolicyError> {
        let Err(err) = regex_syntax::ast::parse::Parser::new().parse(trimmed) else {
            return Ok(());
        };
        let construct = match err.kind() {
            ErrorKind::UnsupportedLookAround => "look-around",
            ErrorKind::UnsupportedBackreference => "backreference",
            _ => return Err(PolicyError::InvalidPattern(err.to_string())),
        };
        let byte = err.span().start.offset.min(trimmed.len());
        let position = trimmed[..byte].chars().count();
        Err(PolicyError::UnsupportedConstruct {
            construct: construct.to_string(),
            position: u32::try_from(position).unwrap_or(u32::MAX),
        })
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
