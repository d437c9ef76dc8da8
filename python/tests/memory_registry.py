"""The one in-memory registry the package's tests use: a TagStore and an
AuditSink over dicts, each commit applied whole or not at all, as a database
transaction would."""

import copy
import hashlib
from typing import Dict, List, Optional

import tagguard


def digest_of(text: str) -> str:
    """A manifest digest derived from a name, as the scenario runner derives them."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class MemoryRegistry:
    """Tags, policies and the audit log of a registry, in memory.

    ``fail_next_commit`` makes the next commit raise (an outage), and
    ``conflict_next_commit`` makes it raise :class:`tagguard.SinkConflict`; either way
    nothing of that commit is applied.
    """

    def __init__(self) -> None:
        self.tags: Dict[int, tagguard.Tag] = {}
        self.policies: Dict[str, tagguard.Policy] = {}
        self.log: List[tagguard.AuditEntry] = []
        self.policy_version = 0
        self.next_id = 1
        self.fail_next_commit = False
        self.conflict_next_commit = False
        self.commits = 0

    # -- what the registry reads --------------------------------------------
    def alive(self, namespace: str, repository: str, name: str) -> Optional[tagguard.Tag]:
        for tag in self.tags.values():
            if (tag.namespace, tag.repository, tag.name) == (namespace, repository, name):
                return tag
        return None

    def in_scope(self, namespace: str, repository: str) -> List[tagguard.Policy]:
        """The repository's policies, then the namespace's."""
        mine = [p for p in self.policies.values() if p.namespace == namespace]
        return [p for p in mine if p.repository == repository] + [
            p for p in mine if p.repository is None
        ]

    def kinds(self) -> List[str]:
        return [e.kind for e in self.log]

    # -- TagStore ------------------------------------------------------------
    def scan(self, request: tagguard.ScanRequest) -> List[tagguard.Tag]:
        found = [
            t
            for t in sorted(self.tags.values(), key=lambda t: t.id)
            if t.id > request.after_id
            and t.namespace == request.namespace
            and (request.repository is None or t.repository == request.repository)
        ]
        return found[: request.limit]

    def mark_immutable(self, changes) -> List[int]:
        changed = []
        for change in changes:
            tag = self.tags.get(change.tag_id)
            if tag is None or tag.immutable:
                continue
            self.tags[tag.id] = _with(tag, immutable=True)
            self.log.append(change.entry)
            changed.append(tag.id)
        return changed

    def mark_immutable_batch(self, batch: tagguard.MarkBatch) -> List[int]:
        changed = []
        for ref in batch.tags:
            tag = self.tags.get(ref.id)
            if tag is None or tag.immutable:
                continue
            self.tags[tag.id] = _with(tag, immutable=True)
            changed.append(tag.id)
        entry = batch.narrowed(changed)
        if entry is not None:
            self.log.append(entry)
        return changed

    # -- AuditSink -----------------------------------------------------------
    def commit(self, change, entries) -> None:
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise RuntimeError("database is down")
        if self.conflict_next_commit:
            self.conflict_next_commit = False
            raise tagguard.SinkConflict("the tag moved meanwhile")
        tags, policies = copy.copy(self.tags), copy.copy(self.policies)
        self._apply(change, tags, policies)
        self.tags, self.policies = tags, policies
        self.log.extend(entries)
        self.commits += 1

    def _apply(self, change, tags, policies) -> None:
        if isinstance(change, tagguard.NoChange):
            return
        if isinstance(change, tagguard.PutTag):
            if change.policy_version != self.policy_version:
                raise tagguard.SinkConflict("policies changed since the decision")
            old = self.alive(change.namespace, change.repository, change.name)
            if (old.id if old else None) != change.replaces:
                raise tagguard.SinkConflict("the tag moved since the decision")
            if old is not None:
                del tags[old.id]
            tag_id, self.next_id = self.next_id, self.next_id + 1
            tags[tag_id] = tagguard.Tag(
                tag_id,
                change.namespace,
                change.repository,
                change.name,
                change.manifest_digest,
                change.immutable,
            )
        elif isinstance(change, tagguard.SetImmutable):
            tags[change.tag_id] = _with(tags[change.tag_id], immutable=change.immutable)
        elif isinstance(change, (tagguard.InsertPolicy, tagguard.UpdatePolicy)):
            policies[change.policy.uuid] = change.policy
            self.policy_version += 1
        elif isinstance(change, tagguard.DeletePolicy):
            del policies[change.uuid]
            self.policy_version += 1
        elif isinstance(change, (tagguard.DeleteTags, tagguard.DeleteManifest)):
            for tag_id in change.tag_ids:
                if tag_id not in tags or tags[tag_id].immutable:
                    raise tagguard.SinkConflict(f"tag {tag_id} changed since the decision")
                del tags[tag_id]
        elif isinstance(change, tagguard.SetExpiration):
            for tag_id in change.tag_ids:
                if tag_id not in tags or tags[tag_id].immutable:
                    raise tagguard.SinkConflict(f"tag {tag_id} changed since the decision")
        else:
            raise TypeError(f"unknown change {change!r}")


def _with(tag: tagguard.Tag, **fields) -> tagguard.Tag:
    values = dict(
        id=tag.id,
        namespace=tag.namespace,
        repository=tag.repository,
        name=tag.name,
        manifest_digest=tag.manifest_digest,
        immutable=tag.immutable,
    )
    values.update(fields)
    return tagguard.Tag(**values)
