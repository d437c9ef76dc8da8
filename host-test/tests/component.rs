//! The built default plugin is a real wasm component that exports the contract.

mod common;

use tagguard_engine::{DEFAULT_PLUGIN_WASM, EngineError, Plugin};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

#[test]
fn the_default_plugin_exports_the_policy_engine_interface() {
    let engine = common::runtime().engine();
    let component =
        Component::new(engine, DEFAULT_PLUGIN_WASM).expect("the default plugin is a component");
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(
        exports
            .iter()
            .any(|e| e == "tagguard:policy/policy-engine@0.3.0"),
        "exports: {exports:?}"
    );
    let (_, item) = ty
        .exports(engine)
        .find(|(n, _)| *n == "tagguard:policy/policy-engine@0.3.0")
        .unwrap();
    let ComponentItem::ComponentInstance(instance) = item.ty else {
        panic!("policy-engine is not an instance export")
    };
    let funcs: Vec<String> = instance
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .collect();
    for f in [
        "validate-policy",
        "on-push",
        "on-delete",
        "on-policy-created",
        "on-policy-updated",
        "on-policy-deleted",
        "run-retroactive",
        "on-manual-change",
        "explain",
        "preview",
        "info",
    ] {
        assert!(
            funcs.iter().any(|x| x == f),
            "missing export {f}: {funcs:?}"
        );
    }
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(
        imports
            .iter()
            .any(|i| i == "tagguard:policy/audit-log@0.3.0"),
        "imports: {imports:?}"
    );
    assert!(
        imports
            .iter()
            .any(|i| i == "tagguard:policy/tag-store@0.3.0"),
        "imports: {imports:?}"
    );
}

#[test]
fn the_default_plugin_reports_its_name_version_and_contract() {
    let plugin = common::default_plugin();
    assert_eq!(plugin.info().name, "tagguard-default");
    assert_eq!(plugin.info().contract, "tagguard:policy@0.3.0");
    assert!(plugin.stamp().digest.starts_with("sha256:") && plugin.stamp().digest.len() == 71);
}

#[test]
fn bytes_that_are_not_a_component_fail_to_load_with_a_typed_error() {
    let err = Plugin::from_bytes(common::runtime(), b"not wasm")
        .err()
        .expect("must fail");
    assert!(matches!(err, EngineError::Load { .. }), "{err}");
}

#[test]
fn a_missing_file_is_an_io_error_naming_the_path() {
    let err = Plugin::from_file(common::runtime(), "/nonexistent/plugin.wasm")
        .err()
        .expect("must fail");
    assert!(matches!(err, EngineError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/plugin.wasm"));
}
