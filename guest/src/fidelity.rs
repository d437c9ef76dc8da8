//! Constructs that Rust `regex` accepts but Quay's matcher (Python's `regex`
//! module, in its default version-0 mode) reads differently. The default
//! plugin refuses each of them, naming it and saying what it means in Quay,
//! so a policy never matches silently differently from Quay.
//!
//! The list comes from `tests/python_regex.rs`, which matches generated
//! patterns with both engines; docs/quay-compat.md explains each entry.

use regex_syntax::ast::{
    AssertionKind, Ast, ClassSet, ClassSetBinaryOpKind, ClassSetItem, Flag, FlagsItemKind,
    RepetitionKind,
};

/// A construct Quay reads differently: what it is, and its byte offset in the pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The construct as written, and what Quay makes of it.
    pub construct: String,
    /// Byte offset of the construct in the pattern.
    pub offset: usize,
    /// Whether it is a possessive quantifier, which a backtracking engine that
    /// supports them (the quay-compat plugin) reads as Quay does.
    pub possessive: bool,
}

/// The first construct of `ast` (parsed from `pattern`) that Quay reads differently.
pub fn first_divergence(ast: &Ast, pattern: &str) -> Option<Divergence> {
    divergences(ast, pattern).into_iter().next()
}

/// Every construct of `ast` (parsed from `pattern`) that Quay reads differently, in
/// pattern order.
pub fn divergences(ast: &Ast, pattern: &str) -> Vec<Divergence> {
    let case_insensitive = sets_case_insensitive(ast);
    let mut found = Vec::new();
    walk(ast, pattern, case_insensitive, &mut found);
    found.sort_by_key(|d| d.offset);
    found
}

fn at(offset: usize, construct: String) -> Option<Divergence> {
    Some(Divergence {
        construct,
        offset,
        possessive: false,
    })
}

fn text(pattern: &str, start: usize, end: usize) -> &str {
    pattern.get(start..end).unwrap_or("")
}

/// Whether any flag group in the pattern turns case-insensitive matching on.
fn sets_case_insensitive(ast: &Ast) -> bool {
    let on = |flags: &regex_syntax::ast::Flags| {
        let mut negated = false;
        flags.items.iter().any(|item| match item.kind {
            FlagsItemKind::Negation => {
                negated = true;
                false
            }
            FlagsItemKind::Flag(Flag::CaseInsensitive) => !negated,
            FlagsItemKind::Flag(_) => false,
        })
    };
    match ast {
        Ast::Flags(set) => on(&set.flags),
        Ast::Group(g) => {
            matches!(&g.kind, regex_syntax::ast::GroupKind::NonCapturing(f) if on(f))
                || sets_case_insensitive(&g.ast)
        }
        Ast::Repetition(r) => sets_case_insensitive(&r.ast),
        Ast::Alternation(a) => a.asts.iter().any(sets_case_insensitive),
        Ast::Concat(c) => c.asts.iter().any(sets_case_insensitive),
        _ => false,
    }
}

fn walk(ast: &Ast, pattern: &str, case_insensitive: bool, found: &mut Vec<Divergence>) {
    found.extend(node(ast, pattern, case_insensitive));
    match ast {
        Ast::Repetition(rep) => walk(&rep.ast, pattern, case_insensitive, found),
        Ast::Group(g) => walk(&g.ast, pattern, case_insensitive, found),
        Ast::Alternation(alt) => alt
            .asts
            .iter()
            .for_each(|a| walk(a, pattern, case_insensitive, found)),
        Ast::Concat(cat) => cat
            .asts
            .iter()
            .for_each(|a| walk(a, pattern, case_insensitive, found)),
        Ast::ClassBracketed(class) => {
            found.extend(class_set(&class.kind, pattern, case_insensitive))
        }
        _ => {}
    }
}

/// What Quay reads differently in this node itself (not its children).
fn node(ast: &Ast, pattern: &str, case_insensitive: bool) -> Option<Divergence> {
    match ast {
        Ast::Repetition(rep) => {
            if let Ast::Repetition(inner) = rep.ast.as_ref() {
                let written = text(pattern, inner.op.span.start.offset, rep.op.span.end.offset);
                let possessive = rep.greedy && rep.op.kind == RepetitionKind::OneOrMore;
                return at(
                    inner.op.span.start.offset,
                    if possessive {
                        format!(
                            "possessive quantifier `{written}` (in Quay's Python `regex` it \
                             never gives back what it matched, so `a++a` matches nothing; Rust \
                             `regex` would repeat the repetition)"
                        )
                    } else {
                        format!(
                            "stacked quantifier `{written}` (Quay's Python `regex` refuses it: \
                             multiple repeat)"
                        )
                    },
                )
                .map(|d| Divergence { possessive, ..d });
            }
            if let RepetitionKind::Range(_) = rep.op.kind {
                let written = text(pattern, rep.op.span.start.offset, rep.op.span.end.offset);
                if written.chars().any(char::is_whitespace) {
                    return at(
                        rep.op.span.start.offset,
                        format!(
                            "counted repetition with spaces `{written}` (in Quay's Python \
                             `regex` it is literal text, not a repetition)"
                        ),
                    );
                }
            }
            None
        }
        Ast::Assertion(a) => {
            let written = text(pattern, a.span.start.offset, a.span.end.offset);
            match a.kind {
                AssertionKind::WordBoundaryStartAngle | AssertionKind::WordBoundaryEndAngle => at(
                    a.span.start.offset,
                    format!(
                        "word-boundary assertion `{written}` (in Quay's Python `regex` it is a \
                         literal `{}`)",
                        &written[1..]
                    ),
                ),
                AssertionKind::WordBoundaryStart
                | AssertionKind::WordBoundaryEnd
                | AssertionKind::WordBoundaryStartHalf
                | AssertionKind::WordBoundaryEndHalf => at(
                    a.span.start.offset,
                    format!(
                        "word-boundary assertion `{written}` (Quay's Python `regex` has no such \
                         assertion and refuses it)"
                    ),
                ),
                _ => None,
            }
        }
        Ast::Literal(lit) if case_insensitive && !lit.c.is_ascii() => {
            non_ascii_folded(lit.span.start.offset, lit.c)
        }
        _ => None,
    }
}

fn non_ascii_folded(offset: usize, c: char) -> Option<Divergence> {
    at(
        offset,
        format!(
            "non-ASCII character `{c}` under case-insensitive matching (Quay's Python `regex` \
             folds case by other rules: `(?i)\u{130}` matches `i` there and not here)"
        ),
    )
}

fn class_set(set: &ClassSet, pattern: &str, case_insensitive: bool) -> Option<Divergence> {
    match set {
        ClassSet::BinaryOp(op) => {
            let (written, meaning) = match op.kind {
                ClassSetBinaryOpKind::Intersection => ("&&", "an intersection"),
                ClassSetBinaryOpKind::Difference => ("--", "a difference"),
                ClassSetBinaryOpKind::SymmetricDifference => ("~~", "a symmetric difference"),
            };
            // The operator sits between its operands.
            let offset = pattern[op.lhs.span().end.offset..]
                .find(written)
                .map_or(op.span.start.offset, |i| op.lhs.span().end.offset + i);
            at(
                offset,
                format!(
                    "class set operation `{written}` ({meaning} here; in Quay's Python \
                     `regex` two plain `{}` characters of the class)",
                    &written[..1]
                ),
            )
        }
        ClassSet::Item(item) => class_item(item, case_insensitive),
    }
}

fn class_item(item: &ClassSetItem, case_insensitive: bool) -> Option<Divergence> {
    match item {
        ClassSetItem::Bracketed(inner) => at(
            inner.span.start.offset,
            "nested class `[` (a union here; in Quay's Python `regex` a `[` inside a class is \
             a plain `[`, and the first `]` closes the class)"
                .to_string(),
        ),
        ClassSetItem::Union(union) => union
            .items
            .iter()
            .find_map(|i| class_item(i, case_insensitive)),
        ClassSetItem::Literal(lit) if case_insensitive && !lit.c.is_ascii() => {
            non_ascii_folded(lit.span.start.offset, lit.c)
        }
        ClassSetItem::Range(range) if case_insensitive && !range.end.c.is_ascii() => {
            non_ascii_folded(range.end.span.start.offset, range.end.c)
        }
        _ => None,
    }
}
