//! The value types a registry passes to the engine and gets back: frozen
//! Python classes, each wrapping the engine's own type.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tagguard_engine::audit::{self, ChainedEntry};
use tagguard_engine::{
    Actor, ActorKind, AuditEntry, MarkBatch, MarkImmutable, Performer, PluginInfo, PluginStamp,
    Policy, PolicyMatch, ScanRequest, Scope, Tag, TagRef,
};

/// `json.loads(text)`: record metadata and entries become plain Python objects.
pub(crate) fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A string as Python's `repr` writes it: in single quotes, with `\\` and `'` escaped.
pub(crate) fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A boolean as Python writes it.
pub(crate) fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn opt_repr(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "None".into(), quoted)
}

/// The performer of an operation; the engine stamps it on every record of the call.
#[pyclass(name = "Actor", module = "tagguard", frozen, from_py_object)]
#[derive(Clone)]
pub struct PyActor(pub Actor);

/// The Python name of an actor kind.
fn actor_kind_name(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::User => "user",
        ActorKind::Robot => "robot",
        ActorKind::Token => "token",
        ActorKind::System => "system",
    }
}

#[pymethods]
impl PyActor {
    #[new]
    #[pyo3(signature = (kind = "user", name = None, ip = None, request_id = None))]
    fn new(
        kind: &str,
        name: Option<String>,
        ip: Option<String>,
        request_id: Option<String>,
    ) -> PyResult<Self> {
        let kind = match kind {
            "user" => ActorKind::User,
            "robot" => ActorKind::Robot,
            "token" => ActorKind::Token,
            "system" => ActorKind::System,
            other => {
                return Err(PyValueError::new_err(format!(
                    "kind: {} is not one of user, robot, token, system",
                    quoted(other)
                )));
            }
        };
        Ok(PyActor(Actor {
            kind,
            name,
            ip,
            request_id,
        }))
    }

    /// The registry itself (garbage collection, schedulers).
    #[staticmethod]
    fn system() -> Self {
        PyActor(Actor {
            kind: ActorKind::System,
            name: None,
            ip: None,
            request_id: None,
        })
    }

    #[getter]
    fn kind(&self) -> &'static str {
        actor_kind_name(self.0.kind)
    }
    #[getter]
    fn name(&self) -> Option<String> {
        self.0.name.clone()
    }
    #[getter]
    fn ip(&self) -> Option<String> {
        self.0.ip.clone()
    }
    #[getter]
    fn request_id(&self) -> Option<String> {
        self.0.request_id.clone()
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
    fn __repr__(&self) -> String {
        format!(
            "Actor(kind={}, name={}, ip={}, request_id={})",
            quoted(self.kind()),
            opt_repr(&self.0.name),
            opt_repr(&self.0.ip),
            opt_repr(&self.0.request_id)
        )
    }
}

/// An immutability policy: a repository policy names its repository, a namespace policy does not.
#[pyclass(name = "Policy", module = "tagguard", frozen, from_py_object)]
#[derive(Clone)]
pub struct PyPolicy(pub Policy);

#[pymethods]
impl PyPolicy {
    #[new]
    #[pyo3(signature = (uuid, namespace, tag_pattern, *, repository = None, tag_pattern_matches = true))]
    fn new(
        uuid: String,
        namespace: String,
        tag_pattern: String,
        repository: Option<String>,
        tag_pattern_matches: bool,
    ) -> Self {
        let scope = if repository.is_some() {
            Scope::Repository
        } else {
            Scope::Namespace
        };
        PyPolicy(Policy {
            uuid,
            scope,
            namespace,
            repository,
            tag_pattern,
            tag_pattern_matches,
        })
    }

    #[getter]
    fn uuid(&self) -> String {
        self.0.uuid.clone()
    }
    #[getter]
    fn namespace(&self) -> String {
        self.0.namespace.clone()
    }
    #[getter]
    fn repository(&self) -> Option<String> {
        self.0.repository.clone()
    }
    #[getter]
    fn tag_pattern(&self) -> String {
        self.0.tag_pattern.clone()
    }
    #[getter]
    fn tag_pattern_matches(&self) -> bool {
        self.0.tag_pattern_matches
    }
    #[getter]
    fn scope(&self) -> &'static str {
        self.0.scope.as_str()
    }

    /// The policy as the JSON object records carry.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("uuid", &self.0.uuid)?;
        d.set_item("namespace", &self.0.namespace)?;
        d.set_item("repository", &self.0.repository)?;
        d.set_item("scope", self.0.scope.as_str())?;
        d.set_item("tag_pattern", &self.0.tag_pattern)?;
        d.set_item("tag_pattern_matches", self.0.tag_pattern_matches)?;
        Ok(d)
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
    fn __repr__(&self) -> String {
        format!(
            "Policy(uuid={}, namespace={}, tag_pattern={}, repository={}, tag_pattern_matches={})",
            quoted(&self.0.uuid),
            quoted(&self.0.namespace),
            quoted(&self.0.tag_pattern),
            opt_repr(&self.0.repository),
            if self.0.tag_pattern_matches {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// An alive tag as the registry stores it.
#[pyclass(name = "Tag", module = "tagguard", frozen, from_py_object)]
#[derive(Clone)]
pub struct PyTag(pub Tag);

#[pymethods]
impl PyTag {
    #[new]
    #[pyo3(signature = (id, namespace, repository, name, manifest_digest, immutable = false))]
    fn new(
        id: u64,
        namespace: String,
        repository: String,
        name: String,
        manifest_digest: String,
        immutable: bool,
    ) -> Self {
        PyTag(Tag {
            id,
            namespace,
            repository,
            name,
            manifest_digest,
            immutable,
        })
    }
    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }
    #[getter]
    fn namespace(&self) -> String {
        self.0.namespace.clone()
    }
    #[getter]
    fn repository(&self) -> String {
        self.0.repository.clone()
    }
    #[getter]
    fn name(&self) -> String {
        self.0.name.clone()
    }
    #[getter]
    fn manifest_digest(&self) -> String {
        self.0.manifest_digest.clone()
    }
    #[getter]
    fn immutable(&self) -> bool {
        self.0.immutable
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
    fn __repr__(&self) -> String {
        let t = &self.0;
        format!(
            "Tag(id={}, namespace={}, repository={}, name={}, manifest_digest={}, immutable={})",
            t.id,
            quoted(&t.namespace),
            quoted(&t.repository),
            quoted(&t.name),
            quoted(&t.manifest_digest),
            py_bool(t.immutable)
        )
    }
}

/// A policy that fires for a tag.
#[pyclass(name = "PolicyMatch", module = "tagguard", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct PyPolicyMatch(pub PolicyMatch);

#[pymethods]
impl PyPolicyMatch {
    #[getter]
    fn policy(&self) -> PyPolicy {
        PyPolicy(self.0.policy.clone())
    }
    #[getter]
    fn pattern_matched(&self) -> bool {
        self.0.pattern_matched
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
    fn __repr__(&self) -> String {
        format!(
            "PolicyMatch(policy={}, pattern_matched={})",
            self.policy().__repr__(),
            if self.0.pattern_matched {
                "True"
            } else {
                "False"
            }
        )
    }
}

/// Wraps matches for Python.
pub(crate) fn matches(list: Vec<PolicyMatch>) -> Vec<PyPolicyMatch> {
    list.into_iter().map(PyPolicyMatch).collect()
}

/// What a plugin reports about itself.
#[pyclass(name = "PluginInfo", module = "tagguard", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct PyPluginInfo(pub PluginInfo);

#[pymethods]
impl PyPluginInfo {
    #[getter]
    fn name(&self) -> String {
        self.0.name.clone()
    }
    #[getter]
    fn version(&self) -> String {
        self.0.version.clone()
    }
    #[getter]
    fn contract(&self) -> String {
        self.0.contract.clone()
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
    fn __repr__(&self) -> String {
        format!(
            "PluginInfo(name={}, version={}, contract={})",
            quoted(&self.0.name),
            quoted(&self.0.version),
            quoted(&self.0.contract)
        )
    }
}

/// Which plugin generation decided, as stamped on every record.
#[pyclass(name = "PluginStamp", module = "tagguard", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct PyPluginStamp(pub PluginStamp);

#[pymethods]
impl PyPluginStamp {
    #[getter]
    fn name(&self) -> String {
        self.0.name.clone()
    }
    #[getter]
    fn version(&self) -> String {
        self.0.version.clone()
    }
    #[getter]
    fn digest(&self) -> String {
        self.0.digest.clone()
    }
    #[getter]
    fn generation(&self) -> u64 {
        self.0.generation
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }
    fn __str__(&self) -> String {
        self.0.to_string()
    }
    fn __repr__(&self) -> String {
        format!(
            "PluginStamp(name={}, version={}, digest={}, generation={})",
            quoted(&self.0.name),
            quoted(&self.0.version),
            quoted(&self.0.digest),
            self.0.generation
        )
    }
}

/// Who performed an operation, as stamped on every record.
#[pyclass(name = "Performer", module = "tagguard", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct PyPerformer(pub Performer);

#[pymethods]
impl PyPerformer {
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind
    }
    #[getter]
    fn name(&self) -> String {
        self.0.name.clone()
    }
    #[getter]
    fn ip(&self) -> Option<String> {
        self.0.ip.clone()
    }
    #[getter]
    fn request_id(&self) -> Option<String> {
        self.0.request_id.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "Performer(kind={}, name={}, ip={}, request_id={})",
            quoted(self.0.kind),
            quoted(&self.0.name),
            opt_repr(&self.0.ip),
            opt_repr(&self.0.request_id)
        )
    }
}

/// One audit record, checked and stamped by the engine, ready to commit.
#[pyclass(name = "AuditEntry", module = "tagguard", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct PyAuditEntry(pub AuditEntry);

#[pymethods]
impl PyAuditEntry {
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind
    }
    #[getter]
    fn namespace(&self) -> String {
        self.0.namespace.clone()
    }
    #[getter]
    fn repository(&self) -> Option<String> {
        self.0.repository.clone()
    }
    #[getter]
    fn tag(&self) -> Option<String> {
        self.0.tag.clone()
    }
    #[getter]
    fn performer(&self) -> PyPerformer {
        PyPerformer(self.0.performer.clone())
    }
    #[getter]
    fn time(&self) -> String {
        self.0.time.clone()
    }
    #[getter]
    fn plugin(&self) -> PyPluginStamp {
        PyPluginStamp(self.0.plugin.clone())
    }
    /// Kind-specific fields (a fresh dict on every access).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.metadata_json()?)
    }
    /// The same fields as JSON text (Quay's `metadata_json` column).
    #[getter]
    fn metadata_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0.metadata).map_err(|e| PyValueError::new_err(e.to_string()))
    }
    /// The whole entry as a JSON object, in the engine's serialization.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.to_json()?)
    }
    /// The whole entry as JSON text, in the engine's serialization.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0).map_err(|e| PyValueError::new_err(e.to_string()))
    }
    /// The entry linked into a hash chain after `prev_hash` at position `seq`: what a
    /// registry stores to make its log tamper-evident (`tagguard verify-log` checks it).
    fn chained(&self, seq: u64, prev_hash: String) -> PyChainedEntry {
        let hash = audit::entry_hash(seq, &prev_hash, &self.0);
        PyChainedEntry(ChainedEntry {
            seq,
            prev_hash,
            hash,
            entry: self.0.clone(),
        })
    }
    fn __repr__(&self) -> String {
        format!(
            "AuditEntry(kind={}, namespace={}, repository={}, tag={}, performer={})",
            quoted(self.0.kind),
            quoted(&self.0.namespace),
            opt_repr(&self.0.repository),
            opt_repr(&self.0.tag),
            quoted(&self.0.performer.name)
        )
    }
}

/// An audit entry with its place in a hash chain.
#[pyclass(
    name = "ChainedEntry",
    module = "tagguard",
    frozen,
    skip_from_py_object
)]
pub struct PyChainedEntry(pub ChainedEntry);

#[pymethods]
impl PyChainedEntry {
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn prev_hash(&self) -> String {
        self.0.prev_hash.clone()
    }
    #[getter]
    fn hash(&self) -> String {
        self.0.hash.clone()
    }
    #[getter]
    fn entry(&self) -> PyAuditEntry {
        PyAuditEntry(self.0.entry.clone())
    }
    /// The entry as a row of Quay's log table (`kind`, `account`, `performer`,
    /// `repository`, `ip`, `metadata_json`, `datetime`); `metadata_json` carries the
    /// host's fields and the chain's `seq`, `hash` and `prev_hash` (docs/audit.md).
    fn quay_log_line<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &audit::quay_log_line(&self.0).to_string())
    }
    /// One line of an exported log, as `tagguard verify-log` reads it.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0).map_err(|e| PyValueError::new_err(e.to_string()))
    }
    fn __repr__(&self) -> String {
        format!(
            "ChainedEntry(seq={}, hash={}, kind={})",
            self.0.seq,
            quoted(&self.0.hash),
            quoted(self.0.entry.kind)
        )
    }
}

/// Which tags a scan returns: the policy's scope, after an id, at most a limit.
#[pyclass(name = "ScanRequest", module = "tagguard", frozen, skip_from_py_object)]
pub struct PyScanRequest(pub ScanRequest);

#[pymethods]
impl PyScanRequest {
    #[getter]
    fn namespace(&self) -> String {
        self.0.namespace.clone()
    }
    #[getter]
    fn repository(&self) -> Option<String> {
        self.0.repository.clone()
    }
    #[getter]
    fn after_id(&self) -> u64 {
        self.0.after_id
    }
    #[getter]
    fn limit(&self) -> u32 {
        self.0.limit
    }
    fn __repr__(&self) -> String {
        format!(
            "ScanRequest(namespace={}, repository={}, after_id={}, limit={})",
            quoted(&self.0.namespace),
            opt_repr(&self.0.repository),
            self.0.after_id,
            self.0.limit
        )
    }
}

/// One tag to make immutable in a retroactive run, with its record.
#[pyclass(
    name = "MarkImmutable",
    module = "tagguard",
    frozen,
    skip_from_py_object
)]
pub struct PyMarkImmutable(pub MarkImmutable);

#[pymethods]
impl PyMarkImmutable {
    #[getter]
    fn tag_id(&self) -> u64 {
        self.0.tag_id
    }
    #[getter]
    fn entry(&self) -> PyAuditEntry {
        PyAuditEntry(self.0.entry.clone())
    }
    fn __repr__(&self) -> String {
        format!("MarkImmutable(tag_id={})", self.0.tag_id)
    }
}

/// A tag listed by a per-batch record.
#[pyclass(name = "TagRef", module = "tagguard", frozen, skip_from_py_object)]
pub struct PyTagRef(pub TagRef);

#[pymethods]
impl PyTagRef {
    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }
    #[getter]
    fn repository(&self) -> String {
        self.0.repository.clone()
    }
    #[getter]
    fn name(&self) -> String {
        self.0.name.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "TagRef(id={}, repository={}, name={})",
            self.0.id,
            quoted(&self.0.repository),
            quoted(&self.0.name)
        )
    }
}

/// Tags to make immutable in a per-batch run, with the one record that lists them.
#[pyclass(name = "MarkBatch", module = "tagguard", frozen, skip_from_py_object)]
pub struct PyMarkBatch(pub MarkBatch);

#[pymethods]
impl PyMarkBatch {
    #[getter]
    fn tags(&self) -> Vec<PyTagRef> {
        self.0.tags.iter().cloned().map(PyTagRef).collect()
    }
    #[getter]
    fn entry(&self) -> PyAuditEntry {
        PyAuditEntry(self.0.entry.clone())
    }
    /// The entry narrowed to the tags that really changed, or None if none did.
    fn narrowed(&self, changed: Vec<u64>) -> Option<PyAuditEntry> {
        self.0.narrowed(&changed).map(PyAuditEntry)
    }
    fn __repr__(&self) -> String {
        format!("MarkBatch({} tags)", self.0.tags.len())
    }
}

/// Adds the value classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyActor>()?;
    m.add_class::<PyPolicy>()?;
    m.add_class::<PyTag>()?;
    m.add_class::<PyPolicyMatch>()?;
    m.add_class::<PyPluginInfo>()?;
    m.add_class::<PyPluginStamp>()?;
    m.add_class::<PyPerformer>()?;
    m.add_class::<PyAuditEntry>()?;
    m.add_class::<PyChainedEntry>()?;
    m.add("GENESIS_HASH", audit::GENESIS_HASH)?;
    m.add_class::<PyScanRequest>()?;
    m.add_class::<PyMarkImmutable>()?;
    m.add_class::<PyTagRef>()?;
    m.add_class::<PyMarkBatch>()?;
    Ok(())
}
