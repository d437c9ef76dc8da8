//! The component glue, as a macro so every plugin built on this crate exports
//! the world the same way: it generates the bindings in the invoking crate,
//! converts between them and the plain modules, and routes the imports
//! through [`Host`](crate::plugin::Host).

/// Exports the `tag-policy` world from the invoking crate, backed by
/// [`PolicyPlugin`](crate::plugin::PolicyPlugin) with the given pattern dialect.
///
/// `$wit_path` is the WIT directory relative to the invoking crate's manifest;
/// `$language` implements [`PatternLanguage`](crate::language::PatternLanguage)
/// and names the plugin in `info`, which reports the invoking crate's version.
/// `$language` is resolved in the invoking module. The invoking crate depends
/// on `wit-bindgen`, on this crate with `default-features = false` (so the
/// default plugin's exports are not linked in too), and invokes this for wasm
/// only, once per component:
///
/// ```text
/// #[cfg(target_family = "wasm")]
/// tagguard_guest::export_policy_plugin!("../wit", tagguard_guest::language::RegexLanguage);
/// ```
#[macro_export]
macro_rules! export_policy_plugin {
    ($wit_path:literal, $language:ty) => {
        /// The generated bindings and the exported component.
        mod policy_plugin_component {
            #[allow(unused_imports)]
            use super::*;
            use $crate::model as m;
            use ::std::cell::RefCell;

            ::wit_bindgen::generate!({
                world: "tag-policy",
                path: $wit_path,
            });

            use exports::tagguard::policy::policy_engine as pe;
            use tagguard::policy::types as t;
            use tagguard::policy::{audit_log, tag_store};

            type Plugin = $crate::plugin::PolicyPlugin<$language>;

            thread_local! {
                static PLUGIN: RefCell<Plugin> = RefCell::new(Plugin::default());
            }

            fn with_plugin<R>(f: impl FnOnce(&mut Plugin, &mut Imports) -> R) -> R {
                PLUGIN.with_borrow_mut(|p| f(p, &mut Imports))
            }

            /// The real imports of the world.
            struct Imports;

            impl $crate::plugin::Host for Imports {
                fn append(&mut self, record: m::AuditRecord) -> Result<(), String> {
                    audit_log::append(&record_out(record))
                }

                fn scan(&mut self, r: &m::ScanRequest) -> Result<Vec<m::Tag>, String> {
                    let request = tag_store::ScanRequest {
                        after_id: r.after_id,
                        limit: r.limit,
                    };
                    Ok(tag_store::scan(request)?.into_iter().map(tag_in).collect())
                }

                fn mark_immutable(&mut self, changes: Vec<m::TagChange>) -> Result<Vec<u64>, String> {
                    let changes: Vec<_> = changes
                        .into_iter()
                        .map(|c| tag_store::TagChange {
                            tag_id: c.tag_id,
                            entry: record_out(c.record),
                        })
                        .collect();
                    tag_store::mark_immutable(&changes)
                }

                fn mark_immutable_batch(&mut self, tag_ids: Vec<u64>, record: m::AuditRecord) -> Result<Vec<u64>, String> {
                    tag_store::mark_immutable_batch(&tag_ids, &record_out(record))
                }
            }

            fn scope_in(s: t::Scope) -> m::Scope {
                match s {
                    t::Scope::Namespace => m::Scope::Namespace,
                    t::Scope::Repository => m::Scope::Repository,
                }
            }

            fn policy_in(p: t::Policy) -> m::Policy {
                m::Policy {
                    uuid: p.uuid,
                    scope: scope_in(p.scope),
                    namespace: p.namespace,
                    repository: p.repository,
                    tag_pattern: p.tag_pattern,
                    tag_pattern_matches: p.tag_pattern_matches,
                }
            }

            fn policies_in(ps: Vec<t::Policy>) -> Vec<m::Policy> {
                ps.into_iter().map(policy_in).collect()
            }

            fn tag_in(x: t::Tag) -> m::Tag {
                m::Tag {
                    id: x.id,
                    namespace: x.namespace,
                    repository: x.repository,
                    name: x.name,
                    manifest_digest: x.manifest_digest,
                    immutable: x.immutable,
                }
            }

            fn tag_out(x: m::Tag) -> t::Tag {
                t::Tag {
                    id: x.id,
                    namespace: x.namespace,
                    repository: x.repository,
                    name: x.name,
                    manifest_digest: x.manifest_digest,
                    immutable: x.immutable,
                }
            }

            fn kind_out(k: m::RecordKind) -> t::RecordKind {
                use m::RecordKind as K;
                match k {
                    K::TagMadeImmutableByPolicy => t::RecordKind::TagMadeImmutableByPolicy,
                    K::TagsMadeImmutableByPolicy => t::RecordKind::TagsMadeImmutableByPolicy,
                    K::CreateImmutabilityPolicy => t::RecordKind::CreateImmutabilityPolicy,
                    K::UpdateImmutabilityPolicy => t::RecordKind::UpdateImmutabilityPolicy,
                    K::DeleteImmutabilityPolicy => t::RecordKind::DeleteImmutabilityPolicy,
                    K::ChangeTagImmutability => t::RecordKind::ChangeTagImmutability,
                    K::TagImmutabilityDenied => t::RecordKind::TagImmutabilityDenied,
                }
            }

            fn record_out(r: m::AuditRecord) -> t::AuditRecord {
                t::AuditRecord {
                    kind: kind_out(r.kind),
                    namespace: r.namespace,
                    repository: r.repository,
                    tag: r.tag,
                    metadata_json: r.metadata_json,
                }
            }

            /// The indices in `policies` of the matched policies (uuids are distinct in a
            /// set), in the order matched, which is the set's order.
            fn indices(policies: &[m::Policy], matched: &[m::PolicyMatch]) -> Vec<u32> {
                matched
                    .iter()
                    .filter_map(|x| policies.iter().position(|p| p.uuid == x.policy.uuid))
                    .map(|i| i as u32)
                    .collect()
            }

            /// A policy set compiled once and kept by the instance. Decisions take its list
            /// out for the call and put it back, so no policy is copied per call.
            struct PolicySetResource {
                policies: RefCell<Vec<m::Policy>>,
            }

            impl PolicySetResource {
                /// Runs `f` with the set's policies moved into it, and puts them back.
                fn lend<R>(&self, f: impl FnOnce(Vec<m::Policy>) -> (Vec<m::Policy>, R)) -> R {
                    let taken = std::mem::take(&mut *self.policies.borrow_mut());
                    let (back, result) = f(taken);
                    *self.policies.borrow_mut() = back;
                    result
                }
            }

            impl pe::GuestPolicySet for PolicySetResource {
                fn compile(policies: Vec<t::Policy>) -> Result<pe::PolicySet, t::Error> {
                    let policies = policies_in(policies);
                    with_plugin(|p, _| p.check_policies(&policies)).map_err(error_out)?;
                    Ok(pe::PolicySet::new(PolicySetResource {
                        policies: RefCell::new(policies),
                    }))
                }
            }

            fn policy_error_out(e: m::PolicyError) -> t::PolicyError {
                use m::PolicyError as E;
                match e {
                    E::EmptyPattern => t::PolicyError::EmptyPattern,
                    E::PatternTooLong(n) => t::PolicyError::PatternTooLong(n),
                    E::InvalidPattern(s) => t::PolicyError::InvalidPattern(s),
                    E::UnsupportedConstruct {
                        construct,
                        position,
                    } => t::PolicyError::UnsupportedConstruct(t::UnsupportedConstruct {
                        construct,
                        position,
                    }),
                    E::DuplicatePattern(s) => t::PolicyError::DuplicatePattern(s),
                    E::ScopeMismatch(s) => t::PolicyError::ScopeMismatch(s),
                    E::MissingField(s) => t::PolicyError::MissingField(s),
                }
            }

            fn error_out(e: m::Error) -> t::Error {
                use m::Error as E;
                match e {
                    E::InvalidPolicy(p) => t::Error::InvalidPolicy(policy_error_out(p)),
                    E::InvalidTagName(s) => t::Error::InvalidTagName(s),
                    E::InvalidArgument(s) => t::Error::InvalidArgument(s),
                    E::Store(s) => t::Error::Store(s),
                    E::Audit(s) => t::Error::Audit(s),
                }
            }

            fn trigger_in(x: pe::RunTrigger) -> m::RunTrigger {
                match x {
                    pe::RunTrigger::PolicyCreated => m::RunTrigger::PolicyCreated,
                    pe::RunTrigger::PolicyUpdated => m::RunTrigger::PolicyUpdated,
                    pe::RunTrigger::Reapplied => m::RunTrigger::Reapplied,
                }
            }

            fn operation_in(x: pe::DeleteOperation) -> m::DeleteOperation {
                match x {
                    pe::DeleteOperation::DeleteTag => m::DeleteOperation::DeleteTag,
                    pe::DeleteOperation::DeleteManifest => m::DeleteOperation::DeleteManifest,
                    pe::DeleteOperation::SetExpiration => m::DeleteOperation::SetExpiration,
                }
            }

            struct Component;

            impl pe::Guest for Component {
                type PolicySet = PolicySetResource;

                fn validate_policy(
                    candidate: t::Policy,
                    existing: Vec<t::Policy>,
                ) -> Result<String, t::PolicyError> {
                    with_plugin(|p, _| p.validate_policy(&policy_in(candidate), &policies_in(existing)))
                        .map(|normalised| normalised.tag_pattern)
                        .map_err(policy_error_out)
                }

                fn on_push(
                    request: pe::PushRequest,
                    policies: pe::PolicySetBorrow<'_>,
                ) -> Result<pe::PushDecision, t::Error> {
                    policies.get::<PolicySetResource>().lend(|policies| {
                        let req = m::PushRequest {
                            namespace: request.namespace,
                            repository: request.repository,
                            tag_name: request.tag_name,
                            manifest_digest: request.manifest_digest,
                            existing: request.existing.map(tag_in),
                            policies,
                        };
                        let decision = with_plugin(|p, h| p.on_push(h, &req)).map_err(error_out);
                        let decision = decision.map(|d| match d {
                            m::PushDecision::Deny(keeping) => {
                                pe::PushDecision::Deny(indices(&req.policies, &keeping))
                            }
                            m::PushDecision::Create { immutable, matched } => {
                                pe::PushDecision::Create(pe::CreateDecision {
                                    immutable,
                                    matched: indices(&req.policies, &matched),
                                })
                            }
                        });
                        (req.policies, decision)
                    })
                }

                fn on_delete(
                    request: pe::DeleteRequest,
                    policies: pe::PolicySetBorrow<'_>,
                ) -> Result<pe::DeleteDecision, t::Error> {
                    policies.get::<PolicySetResource>().lend(|policies| {
                        let req = m::DeleteRequest {
                            operation: operation_in(request.operation),
                            tags: request.tags.into_iter().map(tag_in).collect(),
                            policies,
                        };
                        let decision = with_plugin(|p, h| p.on_delete(h, &req))
                            .map_err(error_out)
                            .map(|d| match d {
                                m::DeleteDecision::Allow => pe::DeleteDecision::Allow,
                                m::DeleteDecision::Deny(ids) => pe::DeleteDecision::Deny(ids),
                            });
                        (req.policies, decision)
                    })
                }

                fn on_policy_created(_actor: t::Actor, policy: t::Policy) -> Result<(), t::Error> {
                    with_plugin(|p, h| p.on_policy_created(h, &policy_in(policy))).map_err(error_out)
                }

                fn on_policy_updated(
                    _actor: t::Actor,
                    before: t::Policy,
                    after: t::Policy,
                ) -> Result<(), t::Error> {
                    with_plugin(|p, h| p.on_policy_updated(h, &policy_in(before), &policy_in(after)))
                        .map_err(error_out)
                }

                fn on_policy_deleted(_actor: t::Actor, policy: t::Policy) -> Result<(), t::Error> {
                    with_plugin(|p, h| p.on_policy_deleted(h, &policy_in(policy))).map_err(error_out)
                }

                fn run_retroactive(
                    _actor: t::Actor,
                    policy: t::Policy,
                    trigger: pe::RunTrigger,
                    options: pe::RunOptions,
                ) -> Result<pe::RunSummary, t::Error> {
                    let options = m::RunOptions {
                        run_id: options.run_id,
                        batch_size: options.batch_size,
                        granularity: match options.granularity {
                            pe::Granularity::PerTag => m::Granularity::PerTag,
                            pe::Granularity::PerBatch => m::Granularity::PerBatch,
                        },
                    };
                    let s = with_plugin(|p, h| {
                        p.run_retroactive(h, &policy_in(policy), trigger_in(trigger), &options)
                    })
                    .map_err(error_out)?;
                    Ok(pe::RunSummary {
                        run_id: s.run_id,
                        count: s.count,
                        sample_tags: s.sample_tags,
                        batches: s.batches,
                    })
                }

                fn on_manual_change(_actor: t::Actor, tag: t::Tag, immutable: bool) -> Result<bool, t::Error> {
                    with_plugin(|p, h| p.on_manual_change(h, &tag_in(tag), immutable)).map_err(error_out)
                }

                fn explain(
                    tag_name: String,
                    policies: pe::PolicySetBorrow<'_>,
                ) -> Result<Vec<u32>, t::Error> {
                    let set = policies.get::<PolicySetResource>();
                    let policies = set.policies.borrow();
                    with_plugin(|p, _| p.explain(&tag_name, &policies))
                        .map(|matched| indices(&policies, &matched))
                        .map_err(error_out)
                }

                fn preview(policy: t::Policy, sample_limit: u32) -> Result<pe::PreviewReport, t::Error> {
                    let pv = with_plugin(|p, h| p.preview(h, &policy_in(policy), sample_limit))
                        .map_err(error_out)?;
                    Ok(pe::PreviewReport {
                        count: pv.count,
                        sample: pv.sample.into_iter().map(tag_out).collect(),
                    })
                }

                fn info() -> pe::PluginInfo {
                    pe::PluginInfo {
                        name: <$language as $crate::language::PatternLanguage>::PLUGIN_NAME.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        contract: $crate::plugin::CONTRACT.into(),
                    }
                }
            }

            export!(Component);
        }
    };
}
