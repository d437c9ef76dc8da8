//! The differential harness shared by the default plugin's test
//! (`guest/tests/python_regex.rs`) and the quay-compat plugin's: a dialect,
//! through the guest's matcher, against Python's `regex` module, which Quay
//! calls as `regex.fullmatch(pattern, tag, timeout=...)`.
//!
//! Generated patterns (and a list of known trouble spots) are matched against
//! generated tag names by both. Every pattern that both accept must fire for
//! exactly the same tags; a pattern only one of them accepts is fine (the
//! other side refuses it when the policy is created, so nothing matches
//! silently differently). Patterns are compared trimmed, as plugins store
//! them.
//!
//! The Python side needs an interpreter with `regex` installed:
//! `TAGGUARD_PYTHON` names it (`.ci/run` creates a venv for it), else
//! `python3` is tried. Without one a test skips with a message, unless
//! `TAGGUARD_REQUIRE_PYREGEX=1` is set, and then it fails.
//! `TAGGUARD_PYREGEX_SEED` and `TAGGUARD_PYREGEX_PATTERNS` explore further.

use std::io::Write;
use std::process::{Command, Stdio};
use tagguard_guest::language::PatternLanguage;
use tagguard_guest::matcher::Matcher;
use tagguard_guest::model::{Policy, Scope};
use tagguard_guest::pattern::validate_pattern;

/// Reads JSON `{"patterns": [...], "tags": [...]}` on stdin; writes for each pattern
/// `null` when `regex` refuses it, else one `0`/`1` per tag (full match or not).
const SCRIPT: &str = r#"
import json, sys, regex
data = json.load(sys.stdin)
tags = data["tags"]
out = []
for p in data["patterns"]:
    try:
        c = regex.compile(p)
    except Exception:
        out.append(None)
        continue
    out.append("".join("1" if c.fullmatch(t, timeout=1.0) else "0" for t in tags))
json.dump(out, sys.stdout)
"#;

/// The interpreter to use, or why there is none.
fn python() -> Result<String, String> {
    let candidate = std::env::var("TAGGUARD_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&candidate)
        .args(["-c", "import regex"])
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(candidate),
        Ok(_) => Err(format!("{candidate} has no `regex` module")),
        Err(e) => Err(format!("cannot run {candidate}: {e}")),
    }
}

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Atoms every dialect is tried with.
pub const ATOMS: &[&str] = &[
    "a",
    "b",
    "v",
    "1",
    "0",
    "_",
    "-",
    "A",
    "B",
    "k",
    "K",
    "s",
    "i",
    "I",
    ".",
    "\\.",
    "\\-",
    "\\_",
    "\\d",
    "\\D",
    "\\w",
    "\\W",
    "\\s",
    "\\S",
    "\\b",
    "\\B",
    "^",
    "$",
    "\\A",
    "\\z",
    "\\Z",
    "[a-c]",
    "[^a]",
    "[A-Z]",
    "[\\w.-]",
    "[^\\d]",
    "[[:alpha:]]",
    "[[:digit:]]",
    "[[:upper:]]",
    "[[:^alpha:]]",
    "[[:word:]]",
    "\\pL",
    "\\p{Lu}",
    "\\p{Ll}",
    "\\pN",
    "\\PL",
    "[a-z&&b]",
    "[a[b]]",
    "[a--b]",
    "[a~~b]",
    "[&&]",
    "\\<",
    "\\>",
    "\\b{start}",
    "(?i)",
    "(?-i)",
    "(?x)",
    "(?s)",
    "(?m)",
    "(?u)",
    " ",
    "#",
    "\\x41",
    "\\u0041",
    "\\t",
    "\u{212A}",
    "\u{17F}",
    "\u{130}",
    "\u{131}",
    "\u{DF}",
    "[\u{212A}]",
    "[^\u{17F}]",
    "\\x{41}",
    "\\0",
    "\\h",
    "\\K",
    "\\e",
    "[.]",
    "[-a]",
    "[a-]",
    "[]a]",
    "[^]a]",
];

const QUANTIFIERS: &[&str] = &[
    "", "", "", "", "*", "+", "?", "{2}", "{1,2}", "{2,}", "{,2}", "*?", "+?", "??", "++", "*+",
    "?+", "{2}+", "{ 1 }", "{1, 2}", "{1,2}?", "{0}",
];

const WRAPPERS: &[(&str, &str)] = &[
    ("", ""),
    ("", ""),
    ("(", ")"),
    ("(?:", ")"),
    ("(?i:", ")"),
    ("(?-i:", ")"),
    ("(?x:", ")"),
    ("(?P<n>", ")"),
];

/// Patterns picked by hand: each construct the two dialects might read differently.
pub const KNOWN: &[&str] = &[
    "a++a",
    "a*+a",
    "a?+a",
    "a{2}+a",
    "[a-z&&b]",
    "[a-z--b]",
    "[a-z~~b]",
    "[a[b]]",
    "\\<v1",
    "v1\\>",
    "(?i)\u{130}",
    "(?i)\u{212A}",
    "(?i)\u{17F}",
    "(?i)[\u{100}-\u{200}]",
    "(?i)\\p{Lu}",
    "(?i)[[:upper:]]",
    "a(?i)b",
    "(?i)a|b",
    "a b(?x)",
    "(?x)[a b]",
    "(?x)a # comment",
    "a$",
    "a\\z",
    "a\\Z",
    "(?m)a$",
    "a{,2}",
    "a{ 1 }",
    "a{1, 2}",
    "v[0-9]+\\.[0-9]+\\.[0-9]+",
    "^latest$",
    "^dev-.*$",
    "(a|ab)(c|bcd)",
    "\\bv1\\b",
    "[\\d-z]+",
];

fn pattern(rng: &mut Rng, atoms: &[&str]) -> String {
    let mut body = String::new();
    let branches = 1 + usize::from(rng.below(4) == 0);
    for b in 0..branches {
        if b > 0 {
            body.push('|');
        }
        for _ in 0..1 + rng.below(4) {
            body.push_str(rng.pick(atoms));
            body.push_str(rng.pick(QUANTIFIERS));
        }
    }
    let (open, close) = WRAPPERS[rng.below(WRAPPERS.len())];
    // Stored patterns are trimmed (policy validation does it), so Quay is given the
    // trimmed text too.
    format!("{open}{body}{close}").trim().to_string()
}

fn tags(rng: &mut Rng) -> Vec<String> {
    let mut tags: Vec<String> = [
        "a", "A", "b", "B", "aa", "aaa", "ab", "Ab", "aB", "ba", "k", "K", "s", "S", "i", "I", "1",
        "0", "11", "_", "v", "v1", "V1", "v1.2.3", "latest", "dev-x", "a-b", "a_b", "a.b", "abc",
        "abcd", "abd", "acd", "abbcd", "0a", "_a", "a1", "1a", "ss",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let first = "aAbBkKsSiIv01_";
    let rest = "aAbBkKsSiIv01_.-";
    for _ in 0..160 {
        let mut tag = String::new();
        tag.push(first.as_bytes()[rng.below(first.len())] as char);
        for _ in 0..rng.below(6) {
            tag.push(rest.as_bytes()[rng.below(rest.len())] as char);
        }
        tags.push(tag);
    }
    tags.sort();
    tags.dedup();
    tags
}

/// Which `tags` the guest's matcher fires for under `pattern` of dialect `L`, or `None`
/// when the dialect refuses the pattern.
fn ours<L: PatternLanguage>(
    matcher: &mut Matcher<L>,
    pattern: &str,
    tags: &[String],
) -> Option<String> {
    validate_pattern::<L>(pattern).ok()?;
    let policy = [Policy {
        uuid: "p".into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: pattern.into(),
        tag_pattern_matches: true,
    }];
    tags.iter()
        .map(|t| {
            matcher
                .any_fires(t, &policy)
                .map(|f| if f { '1' } else { '0' })
        })
        .collect::<Result<String, _>>()
        .ok()
}

fn theirs(python: &str, patterns: &[String], tags: &[String]) -> Vec<Option<String>> {
    let input = serde_json::json!({ "patterns": patterns, "tags": tags }).to_string();
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "the python side failed");
    serde_json::from_slice(&out.stdout).expect("python's answer is JSON")
}

/// A number from the environment, to explore other seeds or more patterns by hand.
fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Runs the comparison for dialect `L` with the shared atoms and known patterns plus
/// `atoms` and `known`; panics listing every pattern both accept that fires for
/// different tags.
pub fn differential<L: PatternLanguage>(atoms: &[&str], known: &[&str]) {
    let python = match python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("TAGGUARD_REQUIRE_PYREGEX").is_some() => {
            panic!("TAGGUARD_REQUIRE_PYREGEX is set, but {why}")
        }
        Err(why) => {
            eprintln!(
                "skipped: {why}; set TAGGUARD_PYTHON to an interpreter with `regex` installed"
            );
            return;
        }
    };
    let seed = env_number("TAGGUARD_PYREGEX_SEED").unwrap_or(0x9E37_79B9_7F4A_7C15);
    let count = env_number("TAGGUARD_PYREGEX_PATTERNS").unwrap_or(3000);
    let mut rng = Rng(seed.max(1));
    let tags = tags(&mut rng);
    let atoms: Vec<&str> = ATOMS.iter().chain(atoms).copied().collect();
    let mut patterns: Vec<String> = KNOWN.iter().chain(known).map(|s| s.to_string()).collect();
    patterns.extend((0..count).map(|_| pattern(&mut rng, &atoms)));
    patterns.sort();
    patterns.dedup();

    let python_says = theirs(&python, &patterns, &tags);
    assert_eq!(python_says.len(), patterns.len());
    let mut matcher = Matcher::<L>::default();
    let (mut both, mut only_ours, mut only_theirs) = (0, 0, 0);
    let mut differences = Vec::new();
    for (pattern, py) in patterns.iter().zip(&python_says) {
        let rs = ours(&mut matcher, pattern, &tags);
        match (&rs, py) {
            (Some(r), Some(p)) => {
                both += 1;
                if let Some(i) = (0..tags.len()).find(|&i| r.as_bytes()[i] != p.as_bytes()[i]) {
                    differences.push(format!(
                        "{pattern:?} on {:?}: plugin {}, python {}",
                        tags[i],
                        r.as_bytes()[i] == b'1',
                        p.as_bytes()[i] == b'1'
                    ));
                }
            }
            (Some(_), None) => only_ours += 1,
            (None, Some(_)) => only_theirs += 1,
            (None, None) => {}
        }
    }
    eprintln!(
        "{} patterns, {} tags: {both} accepted by both, {only_ours} by the plugin only, \
         {only_theirs} by python only",
        patterns.len(),
        tags.len()
    );
    assert!(
        both > 500,
        "too few patterns accepted by both to prove much"
    );
    assert!(
        differences.is_empty(),
        "{} patterns both accept fire differently:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
