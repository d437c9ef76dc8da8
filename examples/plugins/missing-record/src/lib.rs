//! A hostile plugin for tests of the engine's completeness guard (invariant 4).
//!
//! `on-push` creates every tag immutable without staging a record (and
//! without naming a policy of the set that fired), and `run-retroactive`
//! marks tags with records that name another tag. The engine must reject both
//! outcomes and commit nothing.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({ world: "tag-policy", path: "../../../wit" });

use exports::tagguard::policy::policy_engine as pe;
use tagguard::policy::tag_store;
use tagguard::policy::types as t;

struct Forgetful;

/// A policy set compiled by accepting every policy and keeping none: no
/// decision of this plugin looks at them.
struct Ignored;

impl pe::GuestPolicySet for Ignored {
    fn compile(_policies: Vec<t::Policy>) -> Result<pe::PolicySet, t::Error> {
        Ok(pe::PolicySet::new(Ignored))
    }
}

impl pe::Guest for Forgetful {
    type PolicySet = Ignored;

    fn validate_policy(
        candidate: t::Policy,
        _existing: Vec<t::Policy>,
    ) -> Result<String, t::PolicyError> {
        Ok(candidate.tag_pattern.trim().into())
    }

    fn on_push(
        _request: pe::PushRequest,
        _policies: pe::PolicySetBorrow<'_>,
    ) -> Result<pe::PushDecision, t::Error> {
        Ok(pe::PushDecision::Create(pe::CreateDecision {
            immutable: true,
            matched: vec![],
        }))
    }

    fn on_delete(
        _request: pe::DeleteRequest,
        _policies: pe::PolicySetBorrow<'_>,
    ) -> Result<pe::DeleteDecision, t::Error> {
        Ok(pe::DeleteDecision::Allow)
    }

    fn on_policy_created(_actor: t::Actor, _policy: t::Policy) -> Result<(), t::Error> {
        Ok(())
    }

    fn on_policy_updated(
        _actor: t::Actor,
        _before: t::Policy,
        _after: t::Policy,
    ) -> Result<(), t::Error> {
        Ok(())
    }

    fn on_policy_deleted(_actor: t::Actor, _policy: t::Policy) -> Result<(), t::Error> {
        Ok(())
    }

    fn run_retroactive(
        _actor: t::Actor,
        _policy: t::Policy,
        _trigger: pe::RunTrigger,
        options: pe::RunOptions,
    ) -> Result<pe::RunSummary, t::Error> {
        let request = tag_store::ScanRequest {
            after_id: 0,
            limit: options.batch_size,
        };
        let tags = tag_store::scan(request).map_err(t::Error::Store)?;
        let changes: Vec<_> = tags
            .iter()
            .map(|tag| tag_store::TagChange {
                tag_id: tag.id,
                entry: t::AuditRecord {
                    kind: t::RecordKind::TagMadeImmutableByPolicy,
                    namespace: tag.namespace.clone(),
                    repository: Some(tag.repository.clone()),
                    tag: Some(format!("not-{}", tag.name)),
                    metadata_json: "{}".into(),
                },
            })
            .collect();
        let changed = tag_store::mark_immutable(&changes).map_err(t::Error::Store)?;
        Ok(pe::RunSummary {
            run_id: options.run_id,
            count: changed.len() as u64,
            sample_tags: vec![],
            batches: 1,
        })
    }

    fn on_manual_change(_actor: t::Actor, tag: t::Tag, immutable: bool) -> Result<bool, t::Error> {
        Ok(tag.immutable != immutable)
    }

    fn explain(
        _tag_name: String,
        _policies: pe::PolicySetBorrow<'_>,
    ) -> Result<Vec<u32>, t::Error> {
        Ok(vec![])
    }

    fn preview(_policy: t::Policy, _sample_limit: u32) -> Result<pe::PreviewReport, t::Error> {
        Ok(pe::PreviewReport {
            count: 0,
            sample: vec![],
        })
    }

    fn info() -> pe::PluginInfo {
        pe::PluginInfo {
            name: "missing-record".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            contract: "tagguard:policy@0.3.0".into(),
        }
    }
}

export!(Forgetful);
