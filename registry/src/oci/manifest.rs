//! Checking a pushed manifest: its media type, its schema, and the blobs and
//! manifests it refers to.

use crate::digest::Digest;
use serde_json::Value;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest accepted, in bytes (as the distribution project's server).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// What a valid manifest refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Its media type.
    pub media_type: String,
    /// Blobs it needs in the repository (config and layers).
    pub blobs: Vec<Digest>,
    /// Manifests it needs in the repository (an index's entries).
    pub manifests: Vec<Digest>,
    /// The manifest it refers to as its subject.
    pub subject: Option<Digest>,
    /// Its artifact type: `artifactType`, or an image's config media type.
    pub artifact_type: Option<String>,
}

fn descriptor_digest(d: &Value, field: &str) -> Result<Digest, String> {
    let text = d
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{field}.digest: missing"))?;
    if d.get("mediaType").and_then(Value::as_str).is_none() {
        return Err(format!("{field}.mediaType: missing"));
    }
    if d.get("size").and_then(Value::as_u64).is_none() {
        return Err(format!(
            "{field}.size: missing or not a non-negative integer"
        ));
    }
    Digest::parse(text).map_err(|e| format!("{field}.digest: {e}"))
}

/// Checks a manifest's bytes against the `Content-Type` it was pushed with.
pub fn check(bytes: &[u8], content_type: Option<&str>) -> Result<Checked, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(obj) = &doc else {
        return Err("not a JSON object".into());
    };
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err("schemaVersion: must be 2".into());
    }
    let declared = obj.get("mediaType").and_then(Value::as_str);
    let content_type = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = match (declared, content_type) {
        (Some(d), Some(c)) if d != c => {
            return Err(format!(
                "mediaType: {d:?} differs from the Content-Type {c:?}"
            ));
        }
        (Some(d), _) => d.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) if obj.contains_key("manifests") => OCI_INDEX.into(),
        (None, None) => OCI_MANIFEST.into(),
    };
    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(s) => Some(descriptor_digest(s, "subject")?),
    };
    let artifact_type = obj
        .get("artifactType")
        .and_then(Value::as_str)
        .map(String::from);
    let list = |field: &str| -> Result<Vec<Digest>, String> {
        let Some(items) = obj.get(field).and_then(Value::as_array) else {
            return Err(format!("{field}: missing or not a list"));
        };
        items
            .iter()
            .enumerate()
            .filter(|(_, d)| d.get("urls").is_none())
            .map(|(i, d)| descriptor_digest(d, &format!("{field}[{i}]")))
            .collect()
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = obj.get("config").ok_or("config: missing")?;
            let mut blobs = vec![descriptor_digest(config, "config")?];
            blobs.extend(list("layers")?);
            let artifact_type = artifact_type.or_else(|| {
                config
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
            Ok(Checked {
                media_type,
                blobs,
                manifests: Vec::new(),
                subject,
                artifact_type,
            })
        }
        OCI_INDEX | DOCKER_LIST => Ok(Checked {
            manifests: list("manifests")?,
            media_type,
            blobs: Vec::new(),
            subject,
            artifact_type,
        }),
        other => Err(format!(
            "mediaType: {other:?} is not a manifest type this registry stores"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn an_image_manifest_needs_its_config_and_layers() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"x","digest":"{}","size":3}}]}}"#,
            d('a'),
            d('b')
        );
        let c = check(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(c.blobs.len(), 2);
        assert_eq!(
            c.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let err = check(m.as_bytes(), Some(DOCKER_MANIFEST)).unwrap_err();
        assert!(err.contains("differs"), "{err}");
    }

    #[test]
    fn malformed_manifests_name_the_field() {
        assert!(check(b"{", None).unwrap_err().contains("JSON"));
        assert!(check(b"[]", None).unwrap_err().contains("object"));
        assert!(
            check(br#"{"schemaVersion":1}"#, None)
                .unwrap_err()
                .contains("schemaVersion")
        );
        let no_layers = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
            d('a')
        );
        assert!(
            check(no_layers.as_bytes(), None)
                .unwrap_err()
                .contains("layers")
        );
        let bad_digest =
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#;
        assert!(
            check(bad_digest.as_bytes(), None)
                .unwrap_err()
                .contains("manifests[0].digest")
        );
    }
}
