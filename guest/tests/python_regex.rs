//! Differential test: the default plugin's matcher against Python's `regex`
//! module, Quay's matcher (see `pyregex/mod.rs` for how, and what it needs).

mod pyregex;

#[test]
fn every_pattern_both_accept_fires_for_the_same_tags_in_python_regex() {
    pyregex::differential::<tagguard_guest::language::RegexLanguage>(&[], &[]);
}
