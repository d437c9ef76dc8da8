//! Hostile plugins for the engine's sandbox tests. Each cargo feature builds
//! one variant that behaves correctly (exact-match policies, complete
//! records) except for one fault:
//!
//! - `loop-push`: `on-push` never returns;
//! - `loop-run`: `run-retroactive` scans once, then spins without calling back;
//! - `memory-bomb`: `on-push` allocates without bound;
//! - `recursion`: `on-push` recurses without bound;
//! - `panic`: `on-push` panics;
//! - `huge-record`: `on-push` stages a 100 MB record;
//! - `filesystem`: reads a file, so the component imports `wasi:filesystem`;
//! - `wrong-world`: exports a different world altogether.
#![cfg(target_family = "wasm")]

#[cfg(feature = "wrong-world")]
mod wrong {
    wit_bindgen::generate!({
        inline: "package other:thing@9.9.9; world thing { export hello: func() -> string; }",
    });

    struct Other;

    impl Guest for Other {
        fn hello() -> String {
            "not a tag policy".into()
        }
    }

    export!(Other);
}

#[cfg(not(feature = "wrong-world"))]
mod policy {
    wit_bindgen::generate!({ world: "tag-policy", path: "../../../wit" });

    use exports::tagguard::policy::policy_engine as pe;
    use serde_json::json;
    use tagguard::policy::types as t;
    use tagguard::policy::{audit_log, tag_store};

    fn fires(tag: &str, policies: &[t::Policy]) -> Vec<t::PolicyMatch> {
        policies
            .iter()
            .filter(|p| (p.tag_pattern == tag) == p.tag_pattern_matches)
            .map(|p| t::PolicyMatch {
                policy: p.clone(),
                pattern_matched: p.tag_pattern_matches,
            })
            .collect()
    }

    fn stage(
        kind: t::RecordKind,
        ns: &str,
        repo: Option<&str>,
        tag: Option<&str>,
        meta: serde_json::Value,
    ) -> Result<(), t::Error> {
        let entry = t::AuditRecord {
            kind,
            namespace: ns.into(),
            repository: repo.map(Into::into),
            tag: tag.map(Into::into),
            metadata_json: meta.to_string(),
        };
        audit_log::append(&entry).map_err(t::Error::Audit)
    }

    fn fault_in_push() {
        #[cfg(feature = "loop-push")]
        {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        #[cfg(feature = "memory-bomb")]
        {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(Vec::with_capacity(16 << 20));
                std::hint::black_box(&hoard);
            }
        }
        #[cfg(feature = "recursion")]
        {
            fn deeper(n: u64) -> u64 {
                std::hint::black_box(deeper(std::hint::black_box(n) + 1)) + 1
            }
            std::hint::black_box(deeper(0));
        }
        #[cfg(feature = "panic")]
        panic!("hostile plugin: deliberate panic in on-push");
        #[cfg(feature = "filesystem")]
        {
            let _ = std::hint::black_box(std::fs::read("/etc/passwd"));
        }
    }

    struct Hostile;

    impl pe::Guest for Hostile {
        fn validate_policy(
            candidate: t::Policy,
            _existing: Vec<t::Policy>,
        ) -> Result<t::Policy, t::PolicyError> {
            Ok(t::Policy {
                tag_pattern: candidate.tag_pattern.trim().into(),
                ..candidate
            })
        }

        fn on_push(r: pe::PushRequest) -> Result<pe::PushDecision, t::Error> {
            fault_in_push();
            let (ns, repo, tag) = (
                r.namespace.as_str(),
                Some(r.repository.as_str()),
                Some(r.tag_name.as_str()),
            );
            if r.existing.as_ref().is_some_and(|e| e.immutable) {
                let meta = json!({ "tag": r.tag_name, "operation": "push", "outcome": "denied" });
                stage(t::RecordKind::TagImmutabilityDenied, ns, repo, tag, meta)?;
                return Ok(pe::PushDecision::Deny(fires(&r.tag_name, &r.policies)));
            }
            let matched = fires(&r.tag_name, &r.policies);
            let Some(first) = matched.first() else {
                return Ok(pe::PushDecision::Create(pe::CreateDecision {
                    immutable: false,
                    matched,
                }));
            };
            let mut meta = json!({
                "tag": r.tag_name, "manifest_digest": r.manifest_digest, "previous_immutable": false,
                "immutable": true, "trigger": "push", "policy_uuid": first.policy.uuid,
            });
            if cfg!(feature = "huge-record") {
                meta["padding"] = json!("x".repeat(100 << 20));
            }
            stage(t::RecordKind::TagMadeImmutableByPolicy, ns, repo, tag, meta)?;
            Ok(pe::PushDecision::Create(pe::CreateDecision {
                immutable: true,
                matched,
            }))
        }

        fn on_delete(r: pe::DeleteRequest) -> Result<pe::DeleteDecision, t::Error> {
            let blocking: Vec<_> = r.tags.iter().filter(|x| x.immutable).collect();
            for x in &blocking {
                let meta = json!({ "tag": x.name, "operation": "delete", "outcome": "denied" });
                stage(
                    t::RecordKind::TagImmutabilityDenied,
                    &x.namespace,
                    Some(&x.repository),
                    Some(&x.name),
                    meta,
                )?;
            }
            Ok(if blocking.is_empty() {
                pe::DeleteDecision::Allow
            } else {
                pe::DeleteDecision::Deny(blocking.iter().map(|x| x.id).collect())
            })
        }

        fn on_policy_created(_a: t::Actor, p: t::Policy) -> Result<(), t::Error> {
            let meta = json!({ "policy_uuid": p.uuid });
            stage(
                t::RecordKind::CreateImmutabilityPolicy,
                &p.namespace,
                p.repository.as_deref(),
                None,
                meta,
            )
        }

        fn on_policy_updated(_a: t::Actor, _b: t::Policy, p: t::Policy) -> Result<(), t::Error> {
            let meta = json!({ "policy_uuid": p.uuid });
            stage(
                t::RecordKind::UpdateImmutabilityPolicy,
                &p.namespace,
                p.repository.as_deref(),
                None,
                meta,
            )
        }

        fn on_policy_deleted(_a: t::Actor, p: t::Policy) -> Result<(), t::Error> {
            let meta = json!({ "policy_uuid": p.uuid });
            stage(
                t::RecordKind::DeleteImmutabilityPolicy,
                &p.namespace,
                p.repository.as_deref(),
                None,
                meta,
            )
        }

        fn run_retroactive(
            _a: t::Actor,
            p: t::Policy,
            _tr: pe::RunTrigger,
            o: pe::RunOptions,
        ) -> Result<pe::RunSummary, t::Error> {
            let request = tag_store::ScanRequest {
                namespace: p.namespace.clone(),
                repository: p.repository.clone(),
                after_id: 0,
                limit: o.batch_size,
            };
            let tags = tag_store::scan(&request).map_err(t::Error::Store)?;
            #[cfg(feature = "loop-run")]
            {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(tags.len() as u64));
                }
            }
            let changes: Vec<_> = tags
                .iter()
                .filter(|x| !x.immutable && !fires(&x.name, std::slice::from_ref(&p)).is_empty())
                .map(|x| tag_store::TagChange {
                    tag_id: x.id,
                    entry: t::AuditRecord {
                        kind: t::RecordKind::TagMadeImmutableByPolicy,
                        namespace: x.namespace.clone(),
                        repository: Some(x.repository.clone()),
                        tag: Some(x.name.clone()),
                        metadata_json: json!({
                            "tag": x.name, "immutable": true, "previous_immutable": false,
                            "run_id": o.run_id, "policy_uuid": p.uuid, "trigger": "policy_created",
                        })
                        .to_string(),
                    },
                })
                .collect();
            let changed = tag_store::mark_immutable(&changes).map_err(t::Error::Store)?;
            let count = changed.len() as u64;
            let meta = json!({ "run_id": o.run_id, "policy_uuid": p.uuid, "status": "completed", "count": count });
            stage(
                t::RecordKind::TagsMadeImmutableByPolicy,
                &p.namespace,
                p.repository.as_deref(),
                None,
                meta,
            )?;
            Ok(pe::RunSummary {
                run_id: o.run_id,
                count,
                sample_tags: vec![],
                batches: 1,
            })
        }

        fn on_manual_change(_a: t::Actor, x: t::Tag, immutable: bool) -> Result<bool, t::Error> {
            if x.immutable == immutable {
                return Ok(false);
            }
            let meta = json!({ "tag": x.name, "previous_immutable": x.immutable, "immutable": immutable, "trigger": "manual" });
            stage(
                t::RecordKind::ChangeTagImmutability,
                &x.namespace,
                Some(&x.repository),
                Some(&x.name),
                meta,
            )?;
            Ok(true)
        }

        fn explain(
            tag_name: String,
            policies: Vec<t::Policy>,
        ) -> Result<Vec<t::PolicyMatch>, t::Error> {
            Ok(fires(&tag_name, &policies))
        }

        fn preview(_p: t::Policy, _limit: u32) -> Result<pe::PreviewReport, t::Error> {
            Ok(pe::PreviewReport {
                count: 0,
                sample: vec![],
            })
        }

        fn info() -> pe::PluginInfo {
            pe::PluginInfo {
                name: "hostile".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                contract: "tagguard:policy@0.1.0".into(),
            }
        }
    }

    export!(Hostile);
}
