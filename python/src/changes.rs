//! The state changes the engine asks a registry's audit sink to commit with
//! their records: one frozen Python class per kind of change.

use crate::values::{PyPolicy, py_bool, quoted};
use pyo3::prelude::*;
use tagguard_engine::Change;

/// Records only (denials, run summaries, swaps).
#[pyclass(name = "NoChange", module = "tagguard", frozen, skip_from_py_object)]
pub struct NoChange;

#[pymethods]
impl NoChange {
    fn __repr__(&self) -> &'static str {
        "NoChange()"
    }
}

/// Create the tag, or move the alive tag `replaces` to a new manifest.
#[pyclass(
    name = "PutTag",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PutTag {
    namespace: String,
    repository: String,
    name: String,
    manifest_digest: String,
    immutable: bool,
    replaces: Option<u64>,
    policy_version: u64,
}

#[pymethods]
impl PutTag {
    fn __repr__(&self) -> String {
        format!(
            "PutTag(namespace={}, repository={}, name={}, manifest_digest={}, immutable={}, replaces={}, policy_version={})",
            quoted(&self.namespace),
            quoted(&self.repository),
            quoted(&self.name),
            quoted(&self.manifest_digest),
            py_bool(self.immutable),
            self.replaces
                .map_or_else(|| "None".into(), |id| id.to_string()),
            self.policy_version
        )
    }
}

/// Set a tag's immutability (a manual change).
#[pyclass(
    name = "SetImmutable",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct SetImmutable {
    tag_id: u64,
    immutable: bool,
}

#[pymethods]
impl SetImmutable {
    fn __repr__(&self) -> String {
        format!(
            "SetImmutable(tag_id={}, immutable={})",
            self.tag_id,
            py_bool(self.immutable)
        )
    }
}

/// Store a new policy.
#[pyclass(
    name = "InsertPolicy",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct InsertPolicy {
    policy: PyPolicy,
}

/// Replace the stored policy with the same uuid.
#[pyclass(
    name = "UpdatePolicy",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct UpdatePolicy {
    policy: PyPolicy,
}

/// Remove the policy with this uuid.
#[pyclass(
    name = "DeletePolicy",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct DeletePolicy {
    uuid: String,
}

/// Delete these tags (each must still be alive and mutable).
#[pyclass(
    name = "DeleteTags",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct DeleteTags {
    tag_ids: Vec<u64>,
}

/// Delete a manifest and every tag on it (exactly `tag_ids`, all still mutable).
#[pyclass(
    name = "DeleteManifest",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct DeleteManifest {
    namespace: String,
    repository: String,
    digest: String,
    tag_ids: Vec<u64>,
}

/// Set an expiration time on these tags (each must still be alive and mutable).
#[pyclass(
    name = "SetExpiration",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct SetExpiration {
    tag_ids: Vec<u64>,
    expires_at: String,
}

/// The Python object for an engine change.
pub(crate) fn to_python(py: Python<'_>, change: Change) -> PyResult<Py<PyAny>> {
    let object = match change {
        Change::PutTag {
            namespace,
            repository,
            name,
            manifest_digest,
            immutable,
            replaces,
            policy_version,
        } => Py::new(
            py,
            PutTag {
                namespace,
                repository,
                name,
                manifest_digest,
                immutable,
                replaces,
                policy_version,
            },
        )?
        .into_any(),
        Change::SetImmutable { tag_id, immutable } => {
            Py::new(py, SetImmutable { tag_id, immutable })?.into_any()
        }
        Change::InsertPolicy(policy) => Py::new(
            py,
            InsertPolicy {
                policy: PyPolicy(policy),
            },
        )?
        .into_any(),
        Change::UpdatePolicy(policy) => Py::new(
            py,
            UpdatePolicy {
                policy: PyPolicy(policy),
            },
        )?
        .into_any(),
        Change::DeletePolicy(uuid) => Py::new(py, DeletePolicy { uuid })?.into_any(),
        Change::DeleteTags(tag_ids) => Py::new(py, DeleteTags { tag_ids })?.into_any(),
        Change::DeleteManifest {
            namespace,
            repository,
            digest,
            tag_ids,
        } => Py::new(
            py,
            DeleteManifest {
                namespace,
                repository,
                digest,
                tag_ids,
            },
        )?
        .into_any(),
        Change::SetExpiration {
            tag_ids,
            expires_at,
        } => Py::new(
            py,
            SetExpiration {
                tag_ids,
                expires_at,
            },
        )?
        .into_any(),
        Change::None => Py::new(py, NoChange)?.into_any(),
        // A kind of change this module does not know yet: the commit fails closed
        // rather than commit records without the change they explain.
        other => {
            return Err(pyo3::exceptions::PyNotImplementedError::new_err(format!(
                "the Python sink cannot express this change: {other:?}"
            )));
        }
    };
    Ok(object)
}

/// Adds the change classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NoChange>()?;
    m.add_class::<PutTag>()?;
    m.add_class::<SetImmutable>()?;
    m.add_class::<InsertPolicy>()?;
    m.add_class::<UpdatePolicy>()?;
    m.add_class::<DeletePolicy>()?;
    m.add_class::<DeleteTags>()?;
    m.add_class::<DeleteManifest>()?;
    m.add_class::<SetExpiration>()?;
    Ok(())
}
