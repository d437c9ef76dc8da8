//! The tagguard engine as the Python extension module `tagguard._tagguard`.
//!
//! Value types (policies, tags, actors, records, changes) are frozen Python
//! classes that wrap the engine's own types; the registry's tag store and audit
//! sink are Python objects called through [`host`]; engine errors become the
//! exception classes of `tagguard.errors` ([`errors`]).

mod changes;
mod errors;
mod guard;
mod host;
mod outcomes;
mod values;

use pyo3::prelude::*;

/// The compiled core of the `tagguard` package.
#[pymodule]
fn _tagguard(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "DEFAULT_PLUGIN_WASM",
        pyo3::types::PyBytes::new(m.py(), tagguard_engine::DEFAULT_PLUGIN_WASM),
    )?;
    values::register(m)?;
    changes::register(m)?;
    outcomes::register(m)?;
    guard::register(m)?;
    Ok(())
}
