//! The plugin's decisions: one method per export of the contract, written
//! against the [`Host`] trait so it runs natively in tests and in wasm behind
//! the generated bindings. Generic over the pattern dialect, so every plugin
//! built on this crate decides and records the same way.

use crate::language::{PatternLanguage, RegexLanguage};
use crate::matcher::Matcher;
use crate::model::{
    AuditRecord, DeleteDecision, DeleteRequest, Error, Granularity, Policy, PolicyError,
    PolicyMatch, Preview, PushDecision, PushRequest, RunOptions, RunSummary, RunTrigger,
    ScanRequest, Tag, TagChange,
};
use crate::pattern::check_tag_name;
use crate::records::{self, RunProgress, SAMPLE_TAGS};

/// The contract every plugin built on this crate implements.
pub const CONTRACT: &str = "tagguard:policy@0.3.0";

/// The imports a plugin calls: the audit log and the tag store.
pub trait Host {
    /// Stages a record for the current call.
    fn append(&mut self, record: AuditRecord) -> Result<(), String>;
    /// Alive, non-hidden tags in scope with id > `after_id`, ascending.
    fn scan(&mut self, request: &ScanRequest) -> Result<Vec<Tag>, String>;
    /// Marks tags immutable with their records; returns the ids that changed.
    fn mark_immutable(&mut self, changes: Vec<TagChange>) -> Result<Vec<u64>, String>;
    /// Marks tags immutable with one record for the batch; returns the ids that changed.
    fn mark_immutable_batch(
        &mut self,
        tag_ids: Vec<u64>,
        record: AuditRecord,
    ) -> Result<Vec<u64>, String>;
}

/// The plugin's per-instance state for dialect `L`: its cache of compiled policy sets.
pub struct PolicyPlugin<L = RegexLanguage> {
    matcher: Matcher<L>,
}

impl<L: PatternLanguage> Default for PolicyPlugin<L> {
    fn default() -> Self {
        Self {
            matcher: Matcher::default(),
        }
    }
}

fn stage(host: &mut dyn Host, record: AuditRecord) -> Result<(), Error> {
    host.append(record).map_err(Error::Audit)
}

fn tag_name_ok(name: &str) -> Result<(), Error> {
    check_tag_name(name).map_err(Error::InvalidTagName)
}

/// Checks the fields of every policy an export is given, as `validate-policy` does.
fn policies_ok(policies: &[Policy]) -> Result<(), Error> {
    policies
        .iter()
        .try_for_each(crate::policies::check_fields)
        .map_err(Error::InvalidPolicy)
}

impl PolicyPlugin {
    /// The default plugin (regex dialect) with an empty pattern cache.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<L: PatternLanguage> PolicyPlugin<L> {
    /// Validates a candidate policy; see [`crate::policies::validate_policy`].
    pub fn validate_policy(
        &mut self,
        candidate: &Policy,
        existing: &[Policy],
    ) -> Result<Policy, PolicyError> {
        crate::policies::validate_policy::<L>(candidate, existing)
    }

    /// Checks every policy's fields and compiles them as one set, as a decision over
    /// them would: what `policy-set.compile` does.
    pub fn check_policies(&mut self, policies: &[Policy]) -> Result<(), Error> {
        policies_ok(policies)?;
        self.matcher.prepare(policies).map_err(Error::InvalidPolicy)
    }

    /// Every policy that fires for `tag`.
    pub fn explain(&mut self, tag: &str, policies: &[Policy]) -> Result<Vec<PolicyMatch>, Error> {
        tag_name_ok(tag)?;
        policies_ok(policies)?;
        self.matcher
            .explain(tag, policies)
            .map_err(Error::InvalidPolicy)
    }

    /// Decides a push and stages its record.
    pub fn on_push(
        &mut self,
        host: &mut dyn Host,
        req: &PushRequest,
    ) -> Result<PushDecision, Error> {
        tag_name_ok(&req.tag_name)?;
        if req.manifest_digest.trim().is_empty() {
            return Err(Error::InvalidArgument(
                "manifest-digest: must not be empty".into(),
            ));
        }
        if let Some(existing) = req.existing.as_ref().filter(|t| t.immutable) {
            let keeping = self.explain(&existing.name, &req.policies)?;
            stage(
                host,
                records::denied(existing, "push", Some(&req.manifest_digest), &keeping),
            )?;
            return Ok(PushDecision::Deny(keeping));
        }
        let matched = self.explain(&req.tag_name, &req.policies)?;
        if matched.is_empty() {
            return Ok(PushDecision::Create {
                immutable: false,
                matched,
            });
        }
        let previous = req.existing.as_ref().is_some_and(|t| t.immutable);
        stage(
            host,
            records::made_immutable_on_push(
                &req.namespace,
                &req.repository,
                &req.tag_name,
                &req.manifest_digest,
                previous,
                &matched,
            ),
        )?;
        Ok(PushDecision::Create {
            immutable: true,
            matched,
        })
    }

    /// Decides a delete or expiry; stages one denial record per immutable tag.
    pub fn on_delete(
        &mut self,
        host: &mut dyn Host,
        req: &DeleteRequest,
    ) -> Result<DeleteDecision, Error> {
        policies_ok(&req.policies)?;
        let mut blocking = Vec::new();
        for tag in req.tags.iter().filter(|t| t.immutable) {
            let keeping = self.explain(&tag.name, &req.policies)?;
            stage(
                host,
                records::denied(tag, req.operation.as_str(), None, &keeping),
            )?;
            blocking.push(tag.id);
        }
        Ok(if blocking.is_empty() {
            DeleteDecision::Allow
        } else {
            DeleteDecision::Deny(blocking)
        })
    }

    /// Stages `create_immutability_policy`.
    pub fn on_policy_created(&mut self, host: &mut dyn Host, policy: &Policy) -> Result<(), Error> {
        policies_ok(std::slice::from_ref(policy))?;
        stage(host, records::policy_created(policy))
    }

    /// Stages `update_immutability_policy`.
    pub fn on_policy_updated(
        &mut self,
        host: &mut dyn Host,
        before: &Policy,
        after: &Policy,
    ) -> Result<(), Error> {
        policies_ok(&[before.clone(), after.clone()])?;
        if before.uuid != after.uuid {
            return Err(Error::InvalidArgument(format!(
                "after.uuid: {:?} does not match before.uuid {:?}",
                after.uuid, before.uuid
            )));
        }
        stage(host, records::policy_updated(before, after))
    }

    /// Stages `delete_immutability_policy`.
    pub fn on_policy_deleted(&mut self, host: &mut dyn Host, policy: &Policy) -> Result<(), Error> {
        policies_ok(std::slice::from_ref(policy))?;
        stage(host, records::policy_deleted(policy))
    }

    /// Stages `change_tag_immutability` when the state changes; returns whether it does.
    pub fn on_manual_change(
        &mut self,
        host: &mut dyn Host,
        tag: &Tag,
        immutable: bool,
    ) -> Result<bool, Error> {
        if tag.immutable == immutable {
            return Ok(false);
        }
        stage(host, records::manual_change(tag, immutable))?;
        Ok(true)
    }

    /// Checks and compiles `policy` up front, so a bad policy fails before any scan.
    fn prepare(&mut self, policy: &Policy) -> Result<(), Error> {
        let one = std::slice::from_ref(policy);
        policies_ok(one)?;
        self.matcher.prepare(one).map_err(Error::InvalidPolicy)
    }

    /// Whether `policy` fires for `tag`: `None` if not, else whether it fired because its
    /// pattern ran out of matching budget.
    fn fires(&mut self, tag: &str, policy: &Policy) -> Result<Option<bool>, Error> {
        Ok(self
            .matcher
            .firing(tag, std::slice::from_ref(policy))
            .map_err(Error::InvalidPolicy)?
            .first()
            .map(|f| f.budget_exceeded))
    }

    /// Applies `policy` to existing tags in batches; stages the run summary.
    pub fn run_retroactive(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        trigger: RunTrigger,
        options: &RunOptions,
    ) -> Result<RunSummary, Error> {
        if options.batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch-size: must be at least 1".into(),
            ));
        }
        if options.run_id.trim().is_empty() {
            return Err(Error::InvalidArgument("run-id: must not be empty".into()));
        }
        self.prepare(policy)?;
        let mut summary = RunSummary {
            run_id: options.run_id.clone(),
            count: 0,
            sample_tags: Vec::new(),
            batches: 0,
        };
        // On error the call's staged records are dropped and the host writes the
        // failed summary, so only a completed run stages one.
        self.run_batches(host, policy, trigger, options, &mut summary)?;
        let progress = RunProgress {
            run_id: &summary.run_id,
            trigger: trigger.as_str(),
            count: summary.count,
            sample_tags: &summary.sample_tags,
            batches: summary.batches,
            batch_size: options.batch_size,
            granularity: options.granularity.as_str(),
        };
        stage(host, records::run_summary(policy, &progress))?;
        Ok(summary)
    }

    fn run_batches(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        trigger: RunTrigger,
        options: &RunOptions,
        summary: &mut RunSummary,
    ) -> Result<(), Error> {
        let mut request = ScanRequest {
            after_id: 0,
            limit: options.batch_size,
        };
        // Only an empty page ends a scan: the host may cap pages below the limit.
        loop {
            let tags = host.scan(&request).map_err(Error::Store)?;
            let Some(last) = tags.last() else { break };
            request.after_id = last.id;
            summary.batches += 1;
            let mut firing = Vec::new();
            for tag in tags.iter().filter(|t| !t.immutable) {
                if let Some(exceeded) = self.fires(&tag.name, policy)? {
                    firing.push((tag, exceeded));
                }
            }
            if !firing.is_empty() {
                let changed = Self::mark(host, &firing, policy, trigger, options)?;
                summary.count += changed.len() as u64;
                let room = SAMPLE_TAGS.saturating_sub(summary.sample_tags.len());
                if room > 0 {
                    let names = changed
                        .iter()
                        .filter_map(|id| tags.iter().find(|t| t.id == *id))
                        .map(|t| t.name.clone());
                    summary.sample_tags.extend(names.take(room));
                }
            }
        }
        Ok(())
    }

    /// Marks `firing` (each tag with whether its policy's matching budget ran out) with
    /// one record per tag, or one for the batch.
    fn mark(
        host: &mut dyn Host,
        firing: &[(&Tag, bool)],
        policy: &Policy,
        trigger: RunTrigger,
        options: &RunOptions,
    ) -> Result<Vec<u64>, Error> {
        let trigger = trigger.as_str();
        let result = match options.granularity {
            Granularity::PerTag => {
                let changes = firing
                    .iter()
                    .map(|(tag, exceeded)| TagChange {
                        tag_id: tag.id,
                        record: records::made_immutable_by_run_with(
                            tag,
                            policy,
                            trigger,
                            &options.run_id,
                            *exceeded,
                        ),
                    })
                    .collect();
                host.mark_immutable(changes)
            }
            Granularity::PerBatch => {
                let record =
                    records::batch_made_immutable(firing, policy, trigger, &options.run_id);
                host.mark_immutable_batch(firing.iter().map(|(t, _)| t.id).collect(), record)
            }
        };
        result.map_err(Error::Store)
    }

    /// Counts the mutable tags `policy` would make immutable, with a sample. Writes nothing.
    pub fn preview(
        &mut self,
        host: &mut dyn Host,
        policy: &Policy,
        sample_limit: u32,
    ) -> Result<Preview, Error> {
        self.prepare(policy)?;
        let mut preview = Preview {
            count: 0,
            sample: Vec::new(),
        };
        let mut request = ScanRequest {
            after_id: 0,
            limit: 500,
        };
        loop {
            let tags = host.scan(&request).map_err(Error::Store)?;
            let Some(last) = tags.last() else { break };
            request.after_id = last.id;
            for tag in tags.into_iter().filter(|t| !t.immutable) {
                if self.fires(&tag.name, policy)?.is_some() {
                    preview.count += 1;
                    if preview.sample.len() < sample_limit as usize {
                        preview.sample.push(tag);
                    }
                }
            }
        }
        Ok(preview)
    }
}
