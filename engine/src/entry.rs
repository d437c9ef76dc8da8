//! Committed audit entries: a plugin's record stamped by the host with the
//! performer, the time and the identity of the plugin that decided.

use crate::bindings::types::{Actor, ActorKind, AuditRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which plugin generation made a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginStamp {
    /// Plugin name from `info`.
    pub name: String,
    /// Plugin version from `info`.
    pub version: String,
    /// `sha256:` digest of the component bytes.
    pub digest: String,
    /// The serving generation (1 for the first plugin, +1 per swap); 0 outside a
    /// generation (while a plugin is loaded or self-tested).
    pub generation: u64,
}

impl std::fmt::Display for PluginStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = self.digest.get(..19).unwrap_or(&self.digest);
        write!(f, "{}@{} ({short})", self.name, self.version)
    }
}

/// Who performed the operation, as stamped on every entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Performer {
    /// `user`, `robot`, `token` or `system`.
    pub kind: &'static str,
    /// Account or token name; `system` for the registry itself.
    pub name: String,
    /// Client IP, when known.
    pub ip: Option<String>,
    /// Request id, when known.
    pub request_id: Option<String>,
}

impl Performer {
    /// The performer of a call made on behalf of `actor`.
    pub fn of(actor: &Actor) -> Self {
        let kind = match actor.kind {
            ActorKind::User => "user",
            ActorKind::Robot => "robot",
            ActorKind::Token => "token",
            ActorKind::System => "system",
        };
        Performer {
            kind,
            name: actor.name.clone().unwrap_or_else(|| "system".into()),
            ip: actor.ip.clone(),
            request_id: actor.request_id.clone(),
        }
    }
}

/// One audit entry, ready to commit. The sink assigns its sequence number.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Quay log kind name, e.g. `tag_made_immutable_by_policy`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Repository, when the entry concerns one.
    pub repository: Option<String>,
    /// Tag, when the entry concerns exactly one.
    pub tag: Option<String>,
    /// Who did it.
    pub performer: Performer,
    /// UTC time stamped by the host, RFC 3339.
    pub time: String,
    /// Kind-specific fields (a JSON object).
    pub metadata: Map<String, Value>,
    /// The plugin generation that decided.
    pub plugin: PluginStamp,
}

impl AuditEntry {
    /// Stamps a plugin's record; fails when its metadata is not one JSON object.
    pub fn stamp(
        record: AuditRecord,
        performer: &Performer,
        plugin: &PluginStamp,
    ) -> Result<Self, String> {
        let metadata = match serde_json::from_str::<Value>(&record.metadata_json) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err("metadata-json: must be a JSON object".into()),
            Err(e) => return Err(format!("metadata-json: not valid JSON: {e}")),
        };
        Ok(AuditEntry {
            kind: record.kind.as_str(),
            namespace: record.namespace,
            repository: record.repository,
            tag: record.tag,
            performer: performer.clone(),
            time: crate::utc::now(),
            metadata,
            plugin: plugin.clone(),
        })
    }

    /// A record the host writes itself (a run summary after a guest trap, a swap).
    pub fn by_host(
        kind: &'static str,
        namespace: &str,
        repository: Option<&str>,
        performer: &Performer,
        plugin: &PluginStamp,
        metadata: Map<String, Value>,
    ) -> Self {
        AuditEntry {
            kind,
            namespace: namespace.into(),
            repository: repository.map(Into::into),
            tag: None,
            performer: performer.clone(),
            time: crate::utc::now(),
            metadata,
            plugin: plugin.clone(),
        }
    }

    /// A metadata field as a boolean, if it is one.
    pub fn meta_bool(&self, key: &str) -> Option<bool> {
        self.metadata.get(key).and_then(Value::as_bool)
    }

    /// A metadata field as a string, if it is one.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}
