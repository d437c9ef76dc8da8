"""The Quay-style baseline of tagguard's benchmarks: Quay's per-tag policy
evaluation loop, reproduced without its database.

For every tag, Quay's immutability check evaluates each policy in scope with the
third-party ``regex`` module: the pattern is compiled once and cached, matched
against the whole tag name with ``fullmatch`` under a one-second timeout (a
timeout or a pattern error counts as no match), inverted for a policy whose
``tag_pattern_matches`` is false, and the tag is immutable when any policy fires.
This script times that loop over the same tags and policy sets as ``bench`` and
prints one line per policy set:

    1 policy: <ns> ns/tag  (<rate> M tags/s, hits=<tags some policy fired for>)
    10 policies: ...

It is a lower bound for Quay's cost per tag: no database, no ORM, no request.
Usage: ``python quay_style_baseline.py [TAGS]`` (200,000 by default).
"""

import functools
import sys
import time

import regex

TIMEOUT_SECONDS = 1.0


@functools.lru_cache(maxsize=None)
def compiled(pattern):
    """The pattern compiled once, as Quay caches it."""
    return regex.compile(pattern)


def fires(tag, pattern, pattern_matches):
    """Whether one policy fires for ``tag``: a full match, inverted when the policy says so."""
    try:
        matched = compiled(pattern).fullmatch(tag, timeout=TIMEOUT_SECONDS) is not None
    except (regex.error, TimeoutError):
        matched = False
    return matched == pattern_matches


def immutable(tag, policies):
    """Whether any policy in scope fires for ``tag``."""
    return any(fires(tag, pattern, matches) for pattern, matches in policies)


def workload(count):
    """The bench's tag names: semver-like for even i, feature branches for odd i."""
    return [f"v{i % 7}.{i % 13}.{i}" if i % 2 == 0 else f"feature-{i}" for i in range(count)]


def policy_sets():
    """The bench's two policy sets: one semver policy, and nine release policies before it."""
    semver = [(r"v[0-9]+\.[0-9]+\.[0-9]+", True)]
    return [("1 policy", semver), ("10 policies", [(f"^release-{k}-.*$", True) for k in range(9)] + semver)]


def main(argv):
    count = int(argv[1]) if len(argv) > 1 else 200_000
    tags = workload(count)
    for label, policies in policy_sets():
        start = time.perf_counter()
        hits = sum(1 for tag in tags if immutable(tag, policies))
        elapsed = time.perf_counter() - start
        print(f"{label}: {elapsed / count * 1e9:.0f} ns/tag  ({count / elapsed / 1e6:.2f} M tags/s, hits={hits})")


if __name__ == "__main__":
    main(sys.argv)
