//! Engine errors as the exception classes of `tagguard.errors`: one class per
//! error kind, each carrying the plugin, the call, the reason and the fields of
//! its kind.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tagguard_engine::EngineError;
use tagguard_engine::bindings::types::{Error as PluginError, PolicyError};

/// The snake-case name of a policy error kind.
fn policy_error_kind(e: &PolicyError) -> &'static str {
    match e {
        PolicyError::EmptyPattern => "empty_pattern",
        PolicyError::PatternTooLong(_) => "pattern_too_long",
        PolicyError::InvalidPattern(_) => "invalid_pattern",
        PolicyError::UnsupportedConstruct(_) => "unsupported_construct",
        PolicyError::DuplicatePattern(_) => "duplicate_pattern",
        PolicyError::ScopeMismatch(_) => "scope_mismatch",
        PolicyError::MissingField(_) => "missing_field",
    }
}

/// The snake-case name of a plugin error kind.
fn plugin_error_kind(e: &PluginError) -> &'static str {
    match e {
        PluginError::InvalidPolicy(_) => "invalid_policy",
        PluginError::InvalidTagName(_) => "invalid_tag_name",
        PluginError::InvalidArgument(_) => "invalid_argument",
        PluginError::Store(_) => "store",
        PluginError::Audit(_) => "audit",
    }
}

/// The exception class name, plugin, call, reason and extra fields of an error.
struct Parts {
    class: &'static str,
    plugin: Option<String>,
    call: Option<&'static str>,
    reason: String,
    fields: Vec<(&'static str, Field)>,
}

/// A kind-specific exception field.
enum Field {
    Text(String),
    Int(u64),
    Float(f64),
    Error(Box<EngineError>),
}

fn parts(err: EngineError) -> Parts {
    let base = |class, plugin: Option<String>, call, reason: String| Parts {
        class,
        plugin,
        call,
        reason,
        fields: Vec::new(),
    };
    match err {
        EngineError::Io { path, source } => Parts {
            fields: vec![("path", Field::Text(path.display().to_string()))],
            ..base("PluginReadError", None, None, source.to_string())
        },
        EngineError::Load { plugin, reason } => base("LoadError", Some(plugin), None, reason),
        EngineError::UnsafeCache { dir, reason } => Parts {
            fields: vec![("path", Field::Text(dir.display().to_string()))],
            ..base("UnsafeCacheError", None, None, reason)
        },
        EngineError::ContractMismatch { plugin, reason } => {
            base("ContractMismatchError", Some(plugin), None, reason)
        }
        EngineError::GuestTrap {
            plugin,
            call,
            message,
        } => base("GuestTrapError", Some(plugin), Some(call), message),
        EngineError::Timeout {
            plugin,
            call,
            after,
        } => Parts {
            fields: vec![("after_seconds", Field::Float(after.as_secs_f64()))],
            ..base(
                "PluginTimeoutError",
                Some(plugin),
                Some(call),
                format!("stopped after {after:?} without progress"),
            )
        },
        EngineError::MemoryLimit {
            plugin,
            call,
            limit_bytes,
            requested_bytes,
        } => Parts {
            fields: vec![
                ("limit_bytes", Field::Int(limit_bytes as u64)),
                ("requested_bytes", Field::Int(requested_bytes as u64)),
            ],
            ..base(
                "MemoryLimitError",
                Some(plugin),
                Some(call),
                format!(
                    "memory limit of {limit_bytes} bytes exceeded (asked for {requested_bytes})"
                ),
            )
        },
        EngineError::Plugin {
            plugin,
            call,
            error,
        } => Parts {
            fields: vec![("kind", Field::Text(plugin_error_kind(&error).into()))],
            ..base(
                "PluginRefusedError",
                Some(plugin),
                Some(call),
                error.message(),
            )
        },
        EngineError::InvalidPolicy {
            plugin,
            call,
            error,
        } => Parts {
            fields: vec![("kind", Field::Text(policy_error_kind(&error).into()))],
            ..base(
                "InvalidPolicyError",
                Some(plugin),
                Some(call),
                error.message(),
            )
        },
        EngineError::AuditMissing {
            plugin,
            call,
            reason,
        } => base("AuditMissingError", Some(plugin), Some(call), reason),
        EngineError::ContractViolation {
            plugin,
            call,
            reason,
        } => base("ContractViolationError", Some(plugin), Some(call), reason),
        EngineError::InvalidRequest {
            call,
            field,
            reason,
        } => Parts {
            fields: vec![("field", Field::Text(field))],
            ..base("InvalidRequestError", None, Some(call), reason)
        },
        EngineError::InvalidSettings { field, reason } => Parts {
            fields: vec![("field", Field::Text(field.into()))],
            ..base("InvalidSettingsError", None, None, reason)
        },
        EngineError::HostStore {
            plugin,
            call,
            message,
        } => base("TagStoreError", Some(plugin), Some(call), message),
        EngineError::HostAudit {
            plugin,
            call,
            message,
        } => base("AuditSinkError", Some(plugin), Some(call), message),
        EngineError::SwapRejected {
            current,
            candidate,
            cause,
        } => {
            let reason = cause.to_string();
            Parts {
                fields: vec![
                    ("current", Field::Text(current.clone())),
                    ("candidate", Field::Text(candidate)),
                    ("cause", Field::Error(cause)),
                ],
                ..base("SwapRejectedError", Some(current), Some("swap"), reason)
            }
        }
        EngineError::StaleGeneration { serving, offered } => Parts {
            fields: vec![
                ("serving", Field::Int(serving)),
                ("offered", Field::Int(offered)),
            ],
            ..base(
                "StaleGenerationError",
                None,
                Some("adopt"),
                format!("generation {offered} is not newer than generation {serving}"),
            )
        },
        EngineError::NoPreviousGeneration => base(
            "NoPreviousGenerationError",
            None,
            Some("rollback"),
            "no previous plugin generation to roll back to".into(),
        ),
        EngineError::Conflict {
            plugin,
            call,
            message,
        } => base("ConflictError", Some(plugin), Some(call), message),
        EngineError::RunIncomplete {
            plugin,
            run_id,
            policy_uuid,
            changed,
            cause,
        } => {
            let reason = cause.to_string();
            Parts {
                fields: vec![
                    ("run_id", Field::Text(run_id)),
                    ("policy_uuid", Field::Text(policy_uuid)),
                    ("changed", Field::Int(changed)),
                    ("cause", Field::Error(cause)),
                ],
                ..base(
                    "RunIncompleteError",
                    Some(plugin),
                    Some("run-retroactive"),
                    reason,
                )
            }
        }
        other => base("TagguardError", None, None, other.to_string()),
    }
}

/// The `tagguard.errors` exception for an engine error.
pub(crate) fn to_py(err: EngineError) -> PyErr {
    Python::attach(|py| match exception(py, err) {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    })
}

fn exception(py: Python<'_>, err: EngineError) -> PyResult<Bound<'_, PyAny>> {
    let message = err.to_string();
    let parts = parts(err);
    let kwargs = PyDict::new(py);
    kwargs.set_item("plugin", parts.plugin)?;
    kwargs.set_item("call", parts.call)?;
    kwargs.set_item("reason", parts.reason)?;
    for (name, field) in parts.fields {
        match field {
            Field::Text(s) => kwargs.set_item(name, s)?,
            Field::Int(n) => kwargs.set_item(name, n)?,
            Field::Float(x) => kwargs.set_item(name, x)?,
            Field::Error(cause) => kwargs.set_item(name, exception(py, *cause)?)?,
        }
    }
    let class = py.import("tagguard.errors")?.getattr(parts.class)?;
    class.call((message,), Some(&kwargs))
}
