//! What the engine's decisions return to Python: frozen classes built from the
//! engine's outcomes.

use crate::values::{PyPluginStamp, PyPolicy, PyPolicyMatch, PyTag, matches, py_bool, quoted};
use pyo3::prelude::*;
use tagguard_engine::{
    DeleteOutcome, PolicyOutcome, PreviewReport, PushOutcome, RunSummary, SwapOutcome,
};

/// A push decision that was committed.
#[pyclass(
    name = "PushOutcome",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PyPushOutcome {
    denied: bool,
    immutable: bool,
    matched: Vec<PyPolicyMatch>,
}

impl From<PushOutcome> for PyPushOutcome {
    fn from(outcome: PushOutcome) -> Self {
        match outcome {
            PushOutcome::Denied { matched } => PyPushOutcome {
                denied: true,
                immutable: true,
                matched: matches(matched),
            },
            PushOutcome::Created { immutable, matched } => PyPushOutcome {
                denied: false,
                immutable,
                matched: matches(matched),
            },
        }
    }
}

#[pymethods]
impl PyPushOutcome {
    fn __repr__(&self) -> String {
        format!(
            "PushOutcome(denied={}, immutable={}, matched=[{} policies])",
            py_bool(self.denied),
            py_bool(self.immutable),
            self.matched.len()
        )
    }
}

/// A delete or expiry decision that was committed.
#[pyclass(
    name = "DeleteOutcome",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PyDeleteOutcome {
    allowed: bool,
    blocking: Vec<u64>,
}

impl From<DeleteOutcome> for PyDeleteOutcome {
    fn from(outcome: DeleteOutcome) -> Self {
        match outcome {
            DeleteOutcome::Denied { tag_ids } => PyDeleteOutcome {
                allowed: false,
                blocking: tag_ids,
            },
            DeleteOutcome::Allowed => PyDeleteOutcome {
                allowed: true,
                blocking: Vec::new(),
            },
        }
    }
}

#[pymethods]
impl PyDeleteOutcome {
    fn __repr__(&self) -> String {
        format!(
            "DeleteOutcome(allowed={}, blocking={:?})",
            py_bool(self.allowed),
            self.blocking
        )
    }
}

/// What a retroactive run did.
#[pyclass(
    name = "RunSummary",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
#[derive(Clone)]
pub struct PyRunSummary {
    run_id: String,
    count: u64,
    sample_tags: Vec<String>,
    batches: u32,
}

impl From<RunSummary> for PyRunSummary {
    fn from(s: RunSummary) -> Self {
        PyRunSummary {
            run_id: s.run_id,
            count: s.count,
            sample_tags: s.sample_tags,
            batches: s.batches,
        }
    }
}

#[pymethods]
impl PyRunSummary {
    fn __repr__(&self) -> String {
        format!(
            "RunSummary(run_id={}, count={}, sample_tags=[{}], batches={})",
            quoted(&self.run_id),
            self.count,
            self.sample_tags
                .iter()
                .map(|t| quoted(t))
                .collect::<Vec<_>>()
                .join(", "),
            self.batches
        )
    }
}

/// A stored policy and its retroactive run.
#[pyclass(
    name = "PolicyOutcome",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PyPolicyOutcome {
    policy: PyPolicy,
    run: PyRunSummary,
}

impl From<PolicyOutcome> for PyPolicyOutcome {
    fn from(o: PolicyOutcome) -> Self {
        PyPolicyOutcome {
            policy: PyPolicy(o.policy),
            run: o.run.into(),
        }
    }
}

/// A dry run of a policy over existing tags.
#[pyclass(
    name = "PreviewReport",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PyPreviewReport {
    count: u64,
    sample: Vec<PyTag>,
}

impl From<PreviewReport> for PyPreviewReport {
    fn from(r: PreviewReport) -> Self {
        PyPreviewReport {
            count: r.count,
            sample: r.sample.into_iter().map(PyTag).collect(),
        }
    }
}

#[pymethods]
impl PyPreviewReport {
    fn __repr__(&self) -> String {
        format!(
            "PreviewReport(count={}, sample=[{} tags])",
            self.count,
            self.sample.len()
        )
    }
}

/// A published swap or rollback.
#[pyclass(
    name = "SwapOutcome",
    module = "tagguard",
    frozen,
    get_all,
    skip_from_py_object
)]
pub struct PySwapOutcome {
    generation: u64,
    old: PyPluginStamp,
    new: PyPluginStamp,
}

impl From<SwapOutcome> for PySwapOutcome {
    fn from(o: SwapOutcome) -> Self {
        PySwapOutcome {
            generation: o.generation,
            old: PyPluginStamp(o.old),
            new: PyPluginStamp(o.new),
        }
    }
}

#[pymethods]
impl PySwapOutcome {
    fn __repr__(&self) -> String {
        format!(
            "SwapOutcome(generation={}, old={}, new={})",
            self.generation, self.old.0, self.new.0
        )
    }
}

/// Adds the outcome classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPushOutcome>()?;
    m.add_class::<PyDeleteOutcome>()?;
    m.add_class::<PyRunSummary>()?;
    m.add_class::<PyPolicyOutcome>()?;
    m.add_class::<PyPreviewReport>()?;
    m.add_class::<PySwapOutcome>()?;
    Ok(())
}
