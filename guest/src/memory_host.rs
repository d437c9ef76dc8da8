//! An in-memory implementation of the plugin's imports: the tag store and the
//! audit log as plain vectors. Tests drive the plugin natively with it, and
//! benchmarks use it as the native floor of the same logic.

use crate::model::{AuditRecord, Policy, ScanRequest, Tag, TagChange};
use crate::plugin::Host;

/// Tags, staged and committed records in memory, with an optional failure of the
/// n-th mark call.
#[derive(Debug, Default)]
pub struct MemoryHost {
    /// Tags in ascending id order.
    pub tags: Vec<Tag>,
    /// Records staged with `append`.
    pub staged: Vec<AuditRecord>,
    /// Records committed with marked tags.
    pub committed: Vec<AuditRecord>,
    /// Every scan request, in order.
    pub scans: Vec<ScanRequest>,
    /// Fail the mark call with this index (0 = the first), if set.
    pub fail_mark_after: Option<usize>,
    /// The call's scope, as the engine sets it from the call's policy: namespace, and
    /// repository for a repository policy. Unscoped scans see every tag.
    pub scope: Option<(String, Option<String>)>,
    /// The largest page a scan returns, whatever the limit asked (a host's cap).
    pub max_page: Option<u32>,
    marks: usize,
}

impl MemoryHost {
    /// A host over `tags` (sorted by id here).
    pub fn new(mut tags: Vec<Tag>) -> Self {
        tags.sort_by_key(|t| t.id);
        MemoryHost {
            tags,
            ..Default::default()
        }
    }

    /// `n` mutable tags with ids 1..=n in namespace `org`, spread over `repos`, named by `name(id)`.
    pub fn with_tags(n: u64, repos: &[&str], name: impl Fn(u64) -> String) -> Self {
        let tags = (1..=n)
            .map(|id| Tag {
                id,
                namespace: "org".into(),
                repository: repos[(id as usize) % repos.len()].into(),
                name: name(id),
                manifest_digest: format!("sha256:{id:064x}"),
                immutable: false,
            })
            .collect();
        Self::new(tags)
    }

    /// Scopes scans to `policy`, as the engine does for the call that applies it.
    pub fn scoped_to(&mut self, policy: &Policy) -> &mut Self {
        self.scope = Some((policy.namespace.clone(), policy.repository.clone()));
        self
    }

    /// How many tags are immutable.
    pub fn immutable_count(&self) -> usize {
        self.tags.iter().filter(|t| t.immutable).count()
    }

    fn tag_mut(&mut self, id: u64) -> Result<&mut Tag, String> {
        let idx = self
            .tags
            .binary_search_by_key(&id, |t| t.id)
            .map_err(|_| format!("tag id {id}: no such tag"))?;
        Ok(&mut self.tags[idx])
    }

    fn next_mark(&mut self) -> Result<(), String> {
        if self.fail_mark_after == Some(self.marks) {
            return Err("database is down".into());
        }
        self.marks += 1;
        Ok(())
    }
}

impl Host for MemoryHost {
    fn append(&mut self, record: AuditRecord) -> Result<(), String> {
        self.staged.push(record);
        Ok(())
    }

    fn scan(&mut self, r: &ScanRequest) -> Result<Vec<Tag>, String> {
        self.scans.push(r.clone());
        let start = self.tags.partition_point(|t| t.id <= r.after_id);
        Ok(self.tags[start..]
            .iter()
            .filter(|t| {
                self.scope.as_ref().is_none_or(|(ns, repo)| {
                    t.namespace == *ns && repo.as_ref().is_none_or(|x| *x == t.repository)
                })
            })
            .take(r.limit.min(self.max_page.unwrap_or(u32::MAX)) as usize)
            .cloned()
            .collect())
    }

    fn mark_immutable(&mut self, changes: Vec<TagChange>) -> Result<Vec<u64>, String> {
        self.next_mark()?;
        let mut changed = Vec::new();
        for c in changes {
            let tag = self.tag_mut(c.tag_id)?;
            if c.record.tag.as_deref() != Some(tag.name.as_str()) {
                return Err(format!(
                    "the record for tag id {} names {:?}",
                    c.tag_id, c.record.tag
                ));
            }
            if !tag.immutable {
                tag.immutable = true;
                changed.push(c.tag_id);
                self.committed.push(c.record);
            }
        }
        Ok(changed)
    }

    fn mark_immutable_batch(
        &mut self,
        tag_ids: Vec<u64>,
        record: AuditRecord,
    ) -> Result<Vec<u64>, String> {
        self.next_mark()?;
        let listed = record.metadata()["tags"].as_array().map_or(0, Vec::len);
        if listed != tag_ids.len() {
            return Err(format!(
                "the batch record lists {listed} tags for {} ids",
                tag_ids.len()
            ));
        }
        let mut changed = Vec::new();
        for id in tag_ids {
            let tag = self.tag_mut(id)?;
            if !tag.immutable {
                tag.immutable = true;
                changed.push(id);
            }
        }
        if !changed.is_empty() {
            self.committed.push(record);
        }
        Ok(changed)
    }
}
