//! Differential test: the quay-compat plugin's matcher against Python's
//! `regex` module, Quay's matcher, with look-around, backreferences, atomic
//! groups and possessive quantifiers added to the default plugin's test
//! (see `guest/tests/pyregex/mod.rs` for how, and what it needs).

#[path = "../../../../guest/tests/pyregex/mod.rs"]
mod pyregex;

/// What this dialect adds to the shared atoms.
const ATOMS: &[&str] = &[
    "(?=a)",
    "(?!a)",
    "(?=.*1)",
    "(?!.*-)",
    "(?<=a)",
    "(?<!b)",
    "(?<=v)",
    "(a)\\1",
    "(a|b)\\1",
    "(?P<x>[ab])(?P=x)",
    "(?>a+)",
    "(?>a|ab)",
    "a++",
    "[ab]*+",
    "\\w?+",
];

/// Patterns picked by hand for this dialect.
const KNOWN: &[&str] = &[
    "v(?!.*-rc).*",
    "(?=.*[0-9])v.*",
    "(?<=v)1",
    "(a)b\\1",
    "(?i)(a)\\1",
    "(a)?b\\1",
    "(?>a+)a",
    "(a|ab)(?=b)b",
];

#[test]
fn every_pattern_both_accept_fires_for_the_same_tags_in_python_regex() {
    pyregex::differential::<quay_compat::dialect::QuayLanguage>(ATOMS, KNOWN);
}
