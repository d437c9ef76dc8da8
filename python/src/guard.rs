//! `Runtime`, `Plugin` and `Guard`: the engine's entry points for Python. Every
//! decision runs with the interpreter detached, so other Python threads go on
//! while the plugin decides; the store and sink attach again when called.

use crate::errors::to_py;
use crate::host::{PyAuditSink, PyTagStore};
use crate::outcomes::{
    PyDeleteOutcome, PyPolicyOutcome, PyPreviewReport, PyPushOutcome, PyRunSummary, PySwapOutcome,
};
use crate::values::{
    PyActor, PyPluginInfo, PyPluginStamp, PyPolicy, PyPolicyMatch, PyTag, matches, quoted,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tagguard_engine::{
    Granularity, Plugin, Policy, PushRequest, Removal, RemovalAction, RunTrigger, Runtime,
    RuntimeConfig, Settings, TagGuard,
};

/// One wasmtime engine with the sandbox's limits and the precompile cache.
#[pyclass(name = "Runtime", module = "tagguard", frozen, skip_from_py_object)]
pub struct PyRuntime(Arc<Runtime>);

/// The runtime `Plugin.default()` and friends use when none is given.
static SHARED: OnceLock<Arc<Runtime>> = OnceLock::new();

fn shared_runtime(py: Python<'_>) -> PyResult<Arc<Runtime>> {
    if let Some(rt) = SHARED.get() {
        return Ok(rt.clone());
    }
    let rt = Arc::new(py.detach(Runtime::new).map_err(to_py)?);
    Ok(SHARED.get_or_init(|| rt).clone())
}

fn runtime_of(py: Python<'_>, runtime: Option<&PyRuntime>) -> PyResult<Arc<Runtime>> {
    match runtime {
        Some(rt) => Ok(rt.0.clone()),
        None => shared_runtime(py),
    }
}

#[pymethods]
impl PyRuntime {
    #[new]
    #[pyo3(signature = (*, cache_dir = None, no_cache = false))]
    fn new(py: Python<'_>, cache_dir: Option<PathBuf>, no_cache: bool) -> PyResult<Self> {
        let config = RuntimeConfig {
            cache_dir,
            no_cache,
            ..RuntimeConfig::default()
        };
        let rt = py.detach(|| Runtime::with_config(config)).map_err(to_py)?;
        Ok(PyRuntime(Arc::new(rt)))
    }
}

/// A compiled plugin component that implements the contract.
#[pyclass(name = "Plugin", module = "tagguard", frozen, skip_from_py_object)]
pub struct PyPlugin(Plugin);

#[pymethods]
impl PyPlugin {
    /// The embedded default plugin (in a shared runtime unless one is given).
    #[staticmethod]
    #[pyo3(signature = (runtime = None))]
    fn default(py: Python<'_>, runtime: Option<PyRef<'_, PyRuntime>>) -> PyResult<Self> {
        let rt = runtime_of(py, runtime.as_deref())?;
        let plugin = py.detach(|| Plugin::default_plugin(&rt)).map_err(to_py)?;
        Ok(PyPlugin(plugin))
    }

    /// Loads a plugin component from a file.
    #[staticmethod]
    #[pyo3(signature = (path, runtime = None))]
    fn from_file(
        py: Python<'_>,
        path: PathBuf,
        runtime: Option<PyRef<'_, PyRuntime>>,
    ) -> PyResult<Self> {
        let rt = runtime_of(py, runtime.as_deref())?;
        let plugin = py.detach(|| Plugin::from_file(&rt, &path)).map_err(to_py)?;
        Ok(PyPlugin(plugin))
    }

    /// Loads a plugin component from its bytes.
    #[staticmethod]
    #[pyo3(signature = (data, runtime = None))]
    fn from_bytes(
        py: Python<'_>,
        data: Vec<u8>,
        runtime: Option<PyRef<'_, PyRuntime>>,
    ) -> PyResult<Self> {
        let rt = runtime_of(py, runtime.as_deref())?;
        let plugin = py
            .detach(|| Plugin::from_bytes(&rt, &data))
            .map_err(to_py)?;
        Ok(PyPlugin(plugin))
    }

    /// What the plugin reports about itself.
    fn info(&self) -> PyPluginInfo {
        PyPluginInfo(self.0.info().clone())
    }

    /// Name, version and digest, as stamped on records.
    fn stamp(&self) -> PyPluginStamp {
        PyPluginStamp((**self.0.stamp()).clone())
    }

    /// Runs the self-test a swap runs; raises when a swap would refuse the plugin.
    fn self_test(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.0.self_test()).map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("Plugin({})", self.0.stamp())
    }
}

fn policies(list: Vec<PyPolicy>) -> Vec<Policy> {
    list.into_iter().map(|p| p.0).collect()
}

fn trigger(name: &str) -> PyResult<RunTrigger> {
    match name {
        "policy_created" => Ok(RunTrigger::PolicyCreated),
        "policy_updated" => Ok(RunTrigger::PolicyUpdated),
        "reapplied" => Ok(RunTrigger::Reapplied),
        other => Err(PyValueError::new_err(format!(
            "trigger: {} is not one of policy_created, policy_updated, reapplied",
            quoted(other)
        ))),
    }
}

/// The host a registry embeds: every decision, checked and committed with its records.
#[pyclass(name = "Guard", module = "tagguard", frozen, skip_from_py_object)]
pub struct PyGuard(TagGuard);

#[pymethods]
impl PyGuard {
    #[new]
    #[pyo3(signature = (plugin, store, sink, *, batch_size = 500, granularity = "per_tag"))]
    fn new(
        plugin: PyRef<'_, PyPlugin>,
        store: Py<PyAny>,
        sink: Py<PyAny>,
        batch_size: u32,
        granularity: &str,
    ) -> PyResult<Self> {
        let granularity = match granularity {
            "per_tag" => Granularity::PerTag,
            "per_batch" => Granularity::PerBatch,
            other => {
                return Err(PyValueError::new_err(format!(
                    "granularity: {} is not one of per_tag, per_batch",
                    quoted(other)
                )));
            }
        };
        let settings = Settings {
            batch_size,
            granularity,
        };
        let guard = TagGuard::new(
            plugin.0.clone(),
            Arc::new(PyTagStore(store)),
            Arc::new(PyAuditSink(sink)),
            settings,
        )
        .map_err(to_py)?;
        Ok(PyGuard(guard))
    }

    /// What the serving plugin reports about itself.
    fn info(&self) -> PyPluginInfo {
        PyPluginInfo(self.0.info())
    }

    /// Name, version, digest and generation of the serving plugin.
    fn stamp(&self) -> PyPluginStamp {
        PyPluginStamp(self.0.stamp())
    }

    /// The number of the serving generation (1 for the first plugin).
    #[getter]
    fn generation(&self) -> u64 {
        self.0.generation_id()
    }

    /// Checks and normalises a candidate policy against the existing ones.
    #[pyo3(signature = (candidate, existing = Vec::new()))]
    fn validate_policy(
        &self,
        py: Python<'_>,
        candidate: PyPolicy,
        existing: Vec<PyPolicy>,
    ) -> PyResult<PyPolicy> {
        let existing = policies(existing);
        py.detach(|| self.0.validate_policy(&candidate.0, &existing))
            .map(PyPolicy)
            .map_err(to_py)
    }

    /// Decides a push and commits the tag together with its record.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (actor, namespace, repository, tag, manifest_digest, *, existing, policies, policy_version))]
    fn push(
        &self,
        py: Python<'_>,
        actor: PyActor,
        namespace: String,
        repository: String,
        tag: String,
        manifest_digest: String,
        existing: Option<PyTag>,
        policies: Vec<PyPolicy>,
        policy_version: u64,
    ) -> PyResult<PyPushOutcome> {
        let request = PushRequest {
            actor: actor.0,
            namespace,
            repository,
            tag_name: tag,
            manifest_digest,
            existing: existing.map(|t| t.0),
            policies: self::policies(policies),
            policy_version,
        };
        py.detach(|| self.0.push(&request))
            .map(Into::into)
            .map_err(to_py)
    }

    /// Decides a tag delete, manifest delete or expiry; applies it when allowed.
    #[pyo3(signature = (actor, tags, policies, *, action = "delete_tags", expires_at = None))]
    fn delete(
        &self,
        py: Python<'_>,
        actor: PyActor,
        tags: Vec<PyTag>,
        policies: Vec<PyPolicy>,
        action: &str,
        expires_at: Option<String>,
    ) -> PyResult<PyDeleteOutcome> {
        let action = match (action, expires_at) {
            ("delete_tags", None) => RemovalAction::DeleteTags,
            ("delete_manifest", None) => RemovalAction::DeleteManifest,
            ("set_expiration", Some(expires_at)) => RemovalAction::SetExpiration { expires_at },
            ("set_expiration", None) => {
                return Err(PyValueError::new_err(
                    "expires_at: required when action is set_expiration",
                ));
            }
            ("delete_tags" | "delete_manifest", Some(_)) => {
                return Err(PyValueError::new_err(
                    "expires_at: only for action set_expiration",
                ));
            }
            (other, _) => {
                return Err(PyValueError::new_err(format!(
                    "action: {} is not one of delete_tags, delete_manifest, set_expiration",
                    quoted(other)
                )));
            }
        };
        let removal = Removal {
            actor: actor.0,
            tags: tags.into_iter().map(|t| t.0).collect(),
            policies: self::policies(policies),
            action,
        };
        py.detach(|| self.0.delete(&removal))
            .map(Into::into)
            .map_err(to_py)
    }

    /// Sets a tag's immutability by hand; returns whether it changed. The registry
    /// checks permissions (clearing needs an admin) before calling.
    fn manual_change(
        &self,
        py: Python<'_>,
        actor: PyActor,
        tag: PyTag,
        immutable: bool,
    ) -> PyResult<bool> {
        py.detach(|| self.0.manual_change(&actor.0, &tag.0, immutable))
            .map_err(to_py)
    }

    /// Validates and stores a new policy with its record, then applies it to existing tags.
    #[pyo3(signature = (actor, candidate, existing = Vec::new()))]
    fn create_policy(
        &self,
        py: Python<'_>,
        actor: PyActor,
        candidate: PyPolicy,
        existing: Vec<PyPolicy>,
    ) -> PyResult<PyPolicyOutcome> {
        let existing = policies(existing);
        py.detach(|| self.0.create_policy(&actor.0, &candidate.0, &existing))
            .map(Into::into)
            .map_err(to_py)
    }

    /// Validates and stores a policy update with its record, then applies the new pattern.
    #[pyo3(signature = (actor, before, candidate, existing = Vec::new()))]
    fn update_policy(
        &self,
        py: Python<'_>,
        actor: PyActor,
        before: PyPolicy,
        candidate: PyPolicy,
        existing: Vec<PyPolicy>,
    ) -> PyResult<PyPolicyOutcome> {
        let existing = policies(existing);
        py.detach(|| {
            self.0
                .update_policy(&actor.0, &before.0, &candidate.0, &existing)
        })
        .map(Into::into)
        .map_err(to_py)
    }

    /// Deletes a policy with its record. Tags it made immutable stay immutable.
    fn delete_policy(&self, py: Python<'_>, actor: PyActor, policy: PyPolicy) -> PyResult<()> {
        py.detach(|| self.0.delete_policy(&actor.0, &policy.0))
            .map_err(to_py)
    }

    /// Applies a stored policy to the existing tags in its scope (a retroactive run).
    #[pyo3(signature = (actor, policy, trigger = "reapplied"))]
    fn apply_policy(
        &self,
        py: Python<'_>,
        actor: PyActor,
        policy: PyPolicy,
        trigger: &str,
    ) -> PyResult<PyRunSummary> {
        let trigger = self::trigger(trigger)?;
        py.detach(|| self.0.apply_policy(&actor.0, &policy.0, trigger))
            .map(Into::into)
            .map_err(to_py)
    }

    /// Every policy among `policies` that fires for `tag`.
    fn explain(
        &self,
        py: Python<'_>,
        tag: String,
        policies: Vec<PyPolicy>,
    ) -> PyResult<Vec<PyPolicyMatch>> {
        let policies = self::policies(policies);
        py.detach(|| self.0.explain(&tag, &policies))
            .map(matches)
            .map_err(to_py)
    }

    /// How many mutable tags `candidate` would make immutable, with a sample. Writes nothing.
    #[pyo3(signature = (candidate, sample_limit = 10))]
    fn preview(
        &self,
        py: Python<'_>,
        candidate: PyPolicy,
        sample_limit: u32,
    ) -> PyResult<PyPreviewReport> {
        py.detach(|| self.0.preview(&candidate.0, sample_limit))
            .map(Into::into)
            .map_err(to_py)
    }

    /// Replaces the serving plugin after its self-test; the swap is recorded.
    fn swap(
        &self,
        py: Python<'_>,
        actor: PyActor,
        plugin: PyRef<'_, PyPlugin>,
    ) -> PyResult<PySwapOutcome> {
        let candidate = plugin.0.clone();
        py.detach(|| self.0.swap(&actor.0, candidate))
            .map(Into::into)
            .map_err(to_py)
    }

    /// Returns to the plugin that served before the last swap (recorded like a swap).
    fn rollback(&self, py: Python<'_>, actor: PyActor) -> PyResult<PySwapOutcome> {
        py.detach(|| self.0.rollback(&actor.0))
            .map(Into::into)
            .map_err(to_py)
    }

    fn __repr__(&self) -> String {
        format!("Guard({})", self.0.stamp())
    }
}

/// Adds the entry-point classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRuntime>()?;
    m.add_class::<PyPlugin>()?;
    m.add_class::<PyGuard>()?;
    Ok(())
}
