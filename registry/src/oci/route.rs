//! Parsing a `/v2/` path from the right, so that repository names of any
//! depth work: `<name>/manifests/<reference>`, `<name>/blobs/<digest>`,
//! `<name>/blobs/uploads/[<id>]`, `<name>/tags/list`, `<name>/referrers/<digest>`.

use crate::digest::Digest;
use tagguard_engine::names::{check_namespace, check_repository};

/// A repository name: the first component is the namespace, the rest the repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// The namespace (organization or user).
    pub namespace: String,
    /// The repository inside it (one or more components).
    pub repository: String,
}

impl Name {
    /// Parses and checks `ns/repo[/more]`.
    pub fn parse(full: &str) -> Result<Self, String> {
        let Some((namespace, repository)) = full.split_once('/') else {
            return Err(format!(
                "{full:?}: a repository name needs a namespace and a repository (ns/repo)"
            ));
        };
        check_namespace(namespace).map_err(|e| format!("namespace {e}"))?;
        check_repository(repository).map_err(|e| format!("repository {e}"))?;
        Ok(Name {
            namespace: namespace.into(),
            repository: repository.into(),
        })
    }

    /// `ns/repo` as clients write it.
    pub fn full(&self) -> String {
        format!("{}/{}", self.namespace, self.repository)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A tag name.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference; a tag must follow `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains(':') {
            return Digest::parse(text).map(Reference::Digest);
        }
        let ok = !text.is_empty()
            && text.len() <= 128
            && text
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if ok {
            Ok(Reference::Tag(text.into()))
        } else {
            Err(format!(
                "tag {text:?} must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}"
            ))
        }
    }
}

/// What a `/v2/` path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `<name>/tags/list`.
    Tags(Name),
    /// `<name>/manifests/<reference>`; the reference is parsed by the handler.
    Manifest(Name, String),
    /// `<name>/blobs/<digest>`.
    Blob(Name, String),
    /// `<name>/blobs/uploads/`.
    UploadStart(Name),
    /// `<name>/blobs/uploads/<id>`.
    Upload(Name, String),
    /// `<name>/referrers/<digest>`.
    Referrers(Name, String),
}

/// Why a path is not a route: an unknown shape (404) or an invalid name (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No route has this shape.
    NotFound,
    /// The repository name is not valid; why.
    InvalidName(String),
}

/// Parses the path after `/v2/`.
pub fn parse(rest: &str) -> Result<Route, RouteError> {
    match rest {
        "" => return Ok(Route::Base),
        "_catalog" => return Ok(Route::Catalog),
        _ => {}
    }
    let name = |n: &str| Name::parse(n).map_err(RouteError::InvalidName);
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name(n)?));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Route::UploadStart(name(n)?));
    }
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    if last.is_empty() {
        return Err(RouteError::NotFound);
    }
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        return Ok(Route::Upload(name(n)?, last.into()));
    }
    if let Some(n) = head.strip_suffix("/manifests") {
        return Ok(Route::Manifest(name(n)?, last.into()));
    }
    if let Some(n) = head.strip_suffix("/blobs") {
        return Ok(Route::Blob(name(n)?, last.into()));
    }
    if let Some(n) = head.strip_suffix("/referrers") {
        return Ok(Route::Referrers(name(n)?, last.into()));
    }
    Err(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(ns: &str, repo: &str) -> Name {
        Name {
            namespace: ns.into(),
            repository: repo.into(),
        }
    }

    #[test]
    fn names_of_any_depth_parse_from_the_right() {
        assert_eq!(parse(""), Ok(Route::Base));
        assert_eq!(
            parse("org/team/app/manifests/v1"),
            Ok(Route::Manifest(name("org", "team/app"), "v1".into()))
        );
        assert_eq!(
            parse("org/blobs/uploads/app/blobs/uploads/abc"),
            Ok(Route::Upload(
                name("org", "blobs/uploads/app"),
                "abc".into()
            ))
        );
        assert_eq!(
            parse("org/app/blobs/uploads/"),
            Ok(Route::UploadStart(name("org", "app")))
        );
        assert_eq!(
            parse("org/app/tags/list"),
            Ok(Route::Tags(name("org", "app")))
        );
        assert_eq!(parse("org/app/unknown/x"), Err(RouteError::NotFound));
    }

    #[test]
    fn traversal_and_bad_names_are_invalid() {
        for bad in [
            "org/../etc/manifests/x",
            "org/%2e%2e/manifests/x",
            "Org/app/manifests/x",
            "app/manifests/x",
        ] {
            assert!(
                matches!(parse(bad), Err(RouteError::InvalidName(_))),
                "{bad}"
            );
        }
        assert!(Reference::parse("v1.0").is_ok());
        assert!(Reference::parse(".hidden").is_err());
        assert!(Reference::parse(&"a".repeat(129)).is_err());
        assert!(Reference::parse("sha256:zz").is_err());
    }
}
