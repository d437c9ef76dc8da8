//! The registry's tag store and audit sink as Python objects: the engine's two
//! traits, each call made with the interpreter attached, and every Python
//! exception turned into the engine's store or sink error.

use crate::changes;
use crate::values::{PyAuditEntry, PyMarkBatch, PyMarkImmutable, PyScanRequest, PyTag};
use pyo3::prelude::*;
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkBatch, MarkImmutable, ScanRequest, SinkError, StoreError,
    Tag, TagStore,
};

/// `ExceptionType: message`, for the engine's error text.
fn describe(py: Python<'_>, err: &PyErr) -> String {
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    format!("{kind}: {}", err.value(py))
}

/// Extracts a sequence of tag ids returned by the registry.
fn ids(value: &Bound<'_, PyAny>, method: &str) -> PyResult<Vec<u64>> {
    value.extract::<Vec<u64>>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "{method} must return a list of tag ids (int), got {}",
            value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })
}

/// A Python object with `scan`, `mark_immutable` and `mark_immutable_batch`.
pub(crate) struct PyTagStore(pub Py<PyAny>);

impl PyTagStore {
    fn call<T>(
        &self,
        method: &str,
        args: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>,
        read: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<T>,
    ) -> Result<T, StoreError> {
        Python::attach(|py| {
            let result = args(py)
                .and_then(|arg| self.0.bind(py).call_method1(method, (arg,)))
                .and_then(|value| read(&value));
            result.map_err(|e| StoreError(format!("{method}: {}", describe(py, &e))))
        })
    }
}

impl TagStore for PyTagStore {
    fn scan(&self, request: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        self.call(
            "scan",
            |py| Ok(Py::new(py, PyScanRequest(request.clone()))?.into_any()),
            |value| {
                let tags = value.extract::<Vec<PyTag>>().map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(
                        "scan must return a list of tagguard.Tag",
                    )
                })?;
                Ok(tags.into_iter().map(|t| t.0).collect())
            },
        )
    }

    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        self.call(
            "mark_immutable",
            |py| {
                let list = changes
                    .into_iter()
                    .map(|c| Py::new(py, PyMarkImmutable(c)))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(pyo3::types::PyList::new(py, list)?.into_any().unbind())
            },
            |value| ids(value, "mark_immutable"),
        )
    }

    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError> {
        self.call(
            "mark_immutable_batch",
            |py| Ok(Py::new(py, PyMarkBatch(batch))?.into_any()),
            |value| ids(value, "mark_immutable_batch"),
        )
    }
}

/// A Python object with `commit(change, entries)`; it raises `tagguard.SinkConflict`
/// when the state changed since the decision.
pub(crate) struct PyAuditSink(pub Py<PyAny>);

impl AuditSink for PyAuditSink {
    fn commit(&self, change: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        Python::attach(|py| {
            let call = || -> PyResult<()> {
                let change = changes::to_python(py, change)?;
                let entries = entries
                    .into_iter()
                    .map(|e| Py::new(py, PyAuditEntry(e)))
                    .collect::<PyResult<Vec<_>>>()?;
                self.0.bind(py).call_method1("commit", (change, entries))?;
                Ok(())
            };
            call().map_err(|e| {
                let conflict = py
                    .import("tagguard.errors")
                    .and_then(|m| m.getattr("SinkConflict"))
                    .is_ok_and(|class| e.matches(py, class).unwrap_or(false));
                let message = describe(py, &e);
                if conflict {
                    SinkError::Conflict(message)
                } else {
                    SinkError::Unavailable(message)
                }
            })
        })
    }
}
