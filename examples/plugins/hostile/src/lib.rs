//! Hostile plugins for the engine's sandbox tests. Each cargo feature builds
//! one variant that behaves correctly (exact-match policies, complete
//! records) except for one fault:
//!
//! - `loop-push`: `on-push` never returns;
//! - `loop-run`: `run-retroactive` scans once, then spins without calling back;
//! - `memory-bomb`: `on-push` allocates without bound;
//! - `recursion`: `on-push` recurses without bound;
//! - `panic`: `on-push` panics;
//! - `huge-record`: `on-push` stages a 40 MiB record, which fits in its memory;
//! - `filesystem`: reads a file, so the component imports `wasi:filesystem`;
//! - `wrong-world`: exports a different world altogether;
//! - `liar`: tells one lie per call, chosen by the policy uuid or tag name it is
//!   given (see [`policy::Lie`]), so one component tries every false claim the
//!   host must catch.
//!
//! Every variant also writes a note to stderr in `explain`, so a later trap
//! shows whether the host reports only the failing call's stderr.
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

    /// The lies of the `liar` variant, each triggered by a policy uuid or tag name.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    #[allow(
        clippy::enum_variant_names,
        reason = "each variant is named after its trigger, so `preview-lie` is `PreviewLie`"
    )]
    pub enum Lie {
        /// validate-policy (policy uuid `rewrite`): returns another pattern.
        Rewrite,
        /// run (uuid `rescan`): scans page 1 again and again.
        Rescan,
        /// run (uuid `stuck`): at the end of the scan, scans the empty end forever.
        Stuck,
        /// run (uuid `skip-ahead`): jumps past every tag and claims completion.
        SkipAhead,
        /// run (uuid `foreign-mark`): marks ids its scans never returned.
        ForeignMark,
        /// run (uuid `flip-record`): per-tag records say `previous_immutable: true`.
        FlipRecord,
        /// run (uuid `batch-elsewhere`): the per-batch record is in another namespace.
        BatchElsewhere,
        /// run (uuid `short-page`): stops after the first page and claims completion.
        ShortPage,
        /// run (uuid `forged-sample`): the summary names tags that did not change.
        ForgedSample,
        /// run (uuid `forged-batches`): the summary claims more pages than it scanned.
        ForgedBatches,
        /// run (uuid `summary-then-error`): stages a completed summary, then fails.
        SummaryThenError,
        /// preview (uuid `preview-lie`): reports a sample tag from another namespace.
        PreviewLie,
        /// push (tag `wrong-cause`): the record names a policy that did not fire.
        WrongCause,
        /// push (tag `phantom`) and explain: also names index `len`, one past the end of
        /// the policy set, a policy it was not given.
        Phantom,
        /// push (tag `wrong-pattern`): the record names the right policy with another pattern.
        WrongPattern,
        /// push (tag `wrong-repo`): the record's Quay field `repo` names another repository.
        WrongRepo,
        /// delete (tag `dup-deny`): denies the same tag id twice, with two records.
        DupDeny,
        /// explain (tag `unsorted`): names every policy of the set in descending index
        /// order, or index 0 twice when the set has one policy (nothing for an empty set).
        Unsorted,
    }

    /// The lie this call tells: only the `liar` variant lies, and only when asked to.
    fn lie(key: &str) -> Option<Lie> {
        if !cfg!(feature = "liar") {
            return None;
        }
        Some(match key {
            "rewrite" => Lie::Rewrite,
            "rescan" => Lie::Rescan,
            "stuck" => Lie::Stuck,
            "skip-ahead" => Lie::SkipAhead,
            "foreign-mark" => Lie::ForeignMark,
            "flip-record" => Lie::FlipRecord,
            "batch-elsewhere" => Lie::BatchElsewhere,
            "short-page" => Lie::ShortPage,
            "forged-sample" => Lie::ForgedSample,
            "forged-batches" => Lie::ForgedBatches,
            "summary-then-error" => Lie::SummaryThenError,
            "preview-lie" => Lie::PreviewLie,
            "wrong-cause" => Lie::WrongCause,
            "phantom" => Lie::Phantom,
            "wrong-pattern" => Lie::WrongPattern,
            "wrong-repo" => Lie::WrongRepo,
            "dup-deny" => Lie::DupDeny,
            "unsorted" => Lie::Unsorted,
            _ => return None,
        })
    }

    /// A policy set: the policies it was compiled from, as given (patterns match
    /// exactly, so there is nothing to compile).
    struct HostileSet {
        policies: Vec<t::Policy>,
    }

    impl pe::GuestPolicySet for HostileSet {
        fn compile(policies: Vec<t::Policy>) -> Result<pe::PolicySet, t::Error> {
            Ok(pe::PolicySet::new(HostileSet { policies }))
        }
    }

    /// Whether `policy` fires for `tag`: its pattern is the tag name exactly.
    fn fires_for(tag: &str, policy: &t::Policy) -> bool {
        (policy.tag_pattern == tag) == policy.tag_pattern_matches
    }

    /// The indices of the policies that fire for `tag`, ascending.
    fn fires(tag: &str, policies: &[t::Policy]) -> Vec<u32> {
        (0u32..)
            .zip(policies)
            .filter(|(_, p)| fires_for(tag, p))
            .map(|(i, _)| i)
            .collect()
    }

    /// One past the last index of `policies`: names no policy of the set.
    fn out_of_range(policies: &[t::Policy]) -> u32 {
        policies.len() as u32
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

    /// A 40 MiB metadata text built in one allocation, so it fits under a 64 MiB cap.
    fn huge_metadata(tag: &str) -> String {
        let padding = 40 << 20;
        let mut text = String::with_capacity(padding + 256);
        text.push_str("{\"tag\":\"");
        text.push_str(tag);
        text.push_str("\",\"padding\":\"");
        for _ in 0..padding / 64 {
            text.push_str("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        }
        text.push_str("\"}");
        text
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
            #[allow(unconditional_recursion)]
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

    /// The fault of `loop-run`, after a scan that returned `found` tags: spins
    /// without calling back. A function of its own, so the rest of the run stays
    /// reachable code in every variant.
    fn fault_in_run(found: usize) {
        #[cfg(feature = "loop-run")]
        {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(found as u64));
            }
        }
        #[cfg(not(feature = "loop-run"))]
        let _ = found;
    }

    struct Hostile;

    impl pe::Guest for Hostile {
        type PolicySet = HostileSet;

        fn validate_policy(
            candidate: t::Policy,
            _existing: Vec<t::Policy>,
        ) -> Result<String, t::PolicyError> {
            if lie(&candidate.uuid) == Some(Lie::Rewrite) {
                return Ok(".*".into());
            }
            Ok(candidate.tag_pattern.trim().into())
        }

        fn on_push(
            r: pe::PushRequest,
            policies: pe::PolicySetBorrow<'_>,
        ) -> Result<pe::PushDecision, t::Error> {
            fault_in_push();
            let policies = &policies.get::<HostileSet>().policies;
            let (ns, repo, tag) = (
                r.namespace.as_str(),
                Some(r.repository.as_str()),
                Some(r.tag_name.as_str()),
            );
            if r.existing.as_ref().is_some_and(|e| e.immutable) {
                let meta = json!({ "tag": r.tag_name, "operation": "push", "outcome": "denied" });
                stage(t::RecordKind::TagImmutabilityDenied, ns, repo, tag, meta)?;
                return Ok(pe::PushDecision::Deny(fires(&r.tag_name, policies)));
            }
            let mut matched = fires(&r.tag_name, policies);
            if lie(&r.tag_name) == Some(Lie::Phantom) {
                matched.push(out_of_range(policies));
            }
            let Some(&first) = matched.first() else {
                return Ok(pe::PushDecision::Create(pe::CreateDecision {
                    immutable: false,
                    matched,
                }));
            };
            let cause = if lie(&r.tag_name) == Some(Lie::WrongCause) {
                "not-a-policy".to_string()
            } else {
                // The phantom index names no policy: its record names the phantom.
                policies
                    .get(first as usize)
                    .map_or("phantom", |p| p.uuid.as_str())
                    .to_string()
            };
            let mut meta = json!({
                "tag": r.tag_name, "manifest_digest": r.manifest_digest, "previous_immutable": false,
                "immutable": true, "trigger": "push", "policy_uuid": cause,
            });
            if lie(&r.tag_name) == Some(Lie::WrongPattern) {
                meta["policy_pattern"] = json!(".*");
            }
            if lie(&r.tag_name) == Some(Lie::WrongRepo) {
                meta["repo"] = json!("elsewhere");
            }
            if cfg!(feature = "huge-record") {
                let entry = t::AuditRecord {
                    kind: t::RecordKind::TagMadeImmutableByPolicy,
                    namespace: ns.into(),
                    repository: repo.map(Into::into),
                    tag: tag.map(Into::into),
                    metadata_json: huge_metadata(&r.tag_name),
                };
                audit_log::append(&entry).map_err(t::Error::Audit)?;
            } else {
                stage(t::RecordKind::TagMadeImmutableByPolicy, ns, repo, tag, meta)?;
            }
            Ok(pe::PushDecision::Create(pe::CreateDecision {
                immutable: true,
                matched,
            }))
        }

        fn on_delete(
            r: pe::DeleteRequest,
            _policies: pe::PolicySetBorrow<'_>,
        ) -> Result<pe::DeleteDecision, t::Error> {
            let mut blocking: Vec<_> = r.tags.iter().filter(|x| x.immutable).collect();
            if let Some(first) = blocking.first().copied()
                && lie(&first.name) == Some(Lie::DupDeny)
            {
                blocking.push(first);
            }
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
            tr: pe::RunTrigger,
            o: pe::RunOptions,
        ) -> Result<pe::RunSummary, t::Error> {
            let trigger = match tr {
                pe::RunTrigger::PolicyCreated => "policy_created",
                pe::RunTrigger::PolicyUpdated => "policy_updated",
                pe::RunTrigger::Reapplied => "reapplied",
            };
            let told = lie(&p.uuid);
            let mut after_id = 0;
            let (mut count, mut pages, mut sample) = (0u64, 0u32, Vec::<String>::new());
            loop {
                let request = tag_store::ScanRequest {
                    after_id: match told {
                        Some(Lie::Rescan) => 0,
                        Some(Lie::SkipAhead) => 1_000_000,
                        _ => after_id,
                    },
                    limit: o.batch_size,
                };
                let tags = tag_store::scan(request).map_err(t::Error::Store)?;
                fault_in_run(tags.len());
                if told == Some(Lie::Rescan) {
                    continue;
                }
                let Some(last) = tags.last() else {
                    if told == Some(Lie::Stuck) {
                        continue;
                    }
                    break;
                };
                after_id = last.id;
                pages += 1;
                let firing: Vec<_> = tags
                    .iter()
                    .filter(|x| !x.immutable && fires_for(&x.name, &p))
                    .collect();
                let changed = if firing.is_empty() {
                    Vec::new()
                } else if o.granularity == pe::Granularity::PerBatch {
                    let listed: Vec<_> = firing
                        .iter()
                        .map(|x| json!({ "repository": x.repository, "tag": x.name }))
                        .collect();
                    let namespace = if told == Some(Lie::BatchElsewhere) {
                        "elsewhere".to_string()
                    } else {
                        p.namespace.clone()
                    };
                    let entry = t::AuditRecord {
                        kind: t::RecordKind::TagMadeImmutableByPolicy,
                        namespace,
                        repository: p.repository.clone(),
                        tag: None,
                        metadata_json: json!({
                            "tags": listed, "immutable": true, "previous_immutable": false,
                            "run_id": o.run_id, "policy_uuid": p.uuid, "trigger": trigger,
                        })
                        .to_string(),
                    };
                    let ids: Vec<u64> = firing.iter().map(|x| x.id).collect();
                    tag_store::mark_immutable_batch(&ids, &entry).map_err(t::Error::Store)?
                } else {
                    let changes: Vec<_> = firing
                        .iter()
                        .map(|x| tag_store::TagChange {
                            tag_id: if told == Some(Lie::ForeignMark) {
                                x.id + 1_000_000
                            } else {
                                x.id
                            },
                            entry: t::AuditRecord {
                                kind: t::RecordKind::TagMadeImmutableByPolicy,
                                namespace: x.namespace.clone(),
                                repository: Some(x.repository.clone()),
                                tag: Some(x.name.clone()),
                                metadata_json: json!({
                                    "tag": x.name, "immutable": true,
                                    "previous_immutable": told == Some(Lie::FlipRecord),
                                    "run_id": o.run_id, "policy_uuid": p.uuid, "trigger": trigger,
                                })
                                .to_string(),
                            },
                        })
                        .collect();
                    tag_store::mark_immutable(&changes).map_err(t::Error::Store)?
                };
                count += changed.len() as u64;
                for id in &changed {
                    if sample.len() < 10
                        && let Some(x) = tags.iter().find(|x| x.id == *id)
                    {
                        sample.push(x.name.clone());
                    }
                }
                if told == Some(Lie::ShortPage) {
                    break;
                }
            }
            match told {
                Some(Lie::ForgedSample) => sample = vec!["forged".into()],
                Some(Lie::ForgedBatches) => pages += 5,
                _ => {}
            }
            let meta = json!({
                "run_id": o.run_id, "policy_uuid": p.uuid, "status": "completed", "count": count,
                "sample_tags": sample, "batches": pages,
            });
            stage(
                t::RecordKind::TagsMadeImmutableByPolicy,
                &p.namespace,
                p.repository.as_deref(),
                None,
                meta,
            )?;
            if told == Some(Lie::SummaryThenError) {
                return Err(t::Error::InvalidArgument(
                    "hostile plugin: fails after staging a completed summary".into(),
                ));
            }
            Ok(pe::RunSummary {
                run_id: o.run_id,
                count,
                sample_tags: sample,
                batches: pages,
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
            policies: pe::PolicySetBorrow<'_>,
        ) -> Result<Vec<u32>, t::Error> {
            eprintln!("hostile plugin: a stale note from explain");
            let policies = &policies.get::<HostileSet>().policies;
            Ok(match lie(&tag_name) {
                Some(Lie::Phantom) => {
                    let mut matched = fires(&tag_name, policies);
                    matched.push(out_of_range(policies));
                    matched
                }
                Some(Lie::Unsorted) => match policies.len() {
                    1 => vec![0, 0],
                    n => (0..n as u32).rev().collect(),
                },
                _ => fires(&tag_name, policies),
            })
        }

        fn preview(p: t::Policy, _limit: u32) -> Result<pe::PreviewReport, t::Error> {
            let (mut sample, mut after_id) = (Vec::new(), 0);
            loop {
                let tags = tag_store::scan(tag_store::ScanRequest {
                    after_id,
                    limit: 100,
                })
                .map_err(t::Error::Store)?;
                let Some(last) = tags.last() else { break };
                after_id = last.id;
                sample.extend(
                    tags.into_iter()
                        .filter(|x| !x.immutable && fires_for(&x.name, &p)),
                );
            }
            if lie(&p.uuid) == Some(Lie::PreviewLie) {
                sample.push(t::Tag {
                    id: 1,
                    namespace: "other".into(),
                    repository: "secret".into(),
                    name: "leaked".into(),
                    manifest_digest: "sha256:00".into(),
                    immutable: false,
                });
            }
            Ok(pe::PreviewReport {
                count: sample.len() as u64,
                sample,
            })
        }

        fn info() -> pe::PluginInfo {
            pe::PluginInfo {
                name: "hostile".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                contract: "tagguard:policy@0.3.0".into(),
            }
        }
    }

    export!(Hostile);
}
