"""The engine's tag store and audit sink over the Quay-shaped tables.

``QuayStore`` is both objects the engine calls back into (``tagguard.TagStore`` and
``tagguard.AuditSink``). Every write is one database transaction: a change and its
audit records, or a batch of tags and their records, are committed together or
not at all. ``SinkConflict`` tells the engine that the state moved since it
decided; nothing is written then.
"""

import json
import time
from datetime import datetime

from peewee import JOIN

import tagguard

from .models import (
    ImmutabilityPolicyVersion,
    LogEntry3,
    LogEntryKind,
    Manifest,
    NamespaceImmutabilityPolicy,
    Repository,
    RepositoryImmutabilityPolicy,
    Tag,
    User,
    db,
)


def now_ms():
    return int(time.time() * 1000)


# --- rows the registry and the sink share ----------------------------------------


def namespace_row(name):
    """The namespace (a ``user`` row, as in Quay), created on first use."""
    row, _ = User.get_or_create(username=name, defaults={"organization": True})
    return row


def performer_row(performer):
    """The ``user`` row of a record's performer; None for the registry itself, as Quay logs it."""
    if performer.kind == "system":
        return None
    row, _ = User.get_or_create(
        username=performer.name, defaults={"robot": performer.kind == "robot"}
    )
    return row


def repository_row(namespace, name):
    """The repository, created on first use (a push creates it, as in Quay)."""
    row, _ = Repository.get_or_create(namespace_user=namespace_row(namespace), name=name)
    return row


def alive_tags():
    """Alive tags with their repository, namespace and manifest joined in."""
    return (
        Tag.select(Tag, Repository, User, Manifest)
        .join(Repository)
        .join(User)
        .switch(Tag)
        .join(Manifest)
        .where(Tag.lifetime_end_ms.is_null())
    )


def alive_tag(namespace, repository, name):
    return (
        alive_tags()
        .where(User.username == namespace, Repository.name == repository, Tag.name == name)
        .first()
    )


def alive_tag_by_id(tag_id):
    return alive_tags().where(Tag.id == tag_id).first()


def engine_tag(row):
    """A tag row as the engine sees it."""
    return tagguard.Tag(
        row.id,
        row.repository.namespace_user.username,
        row.repository.name,
        row.name,
        row.manifest.digest,
        row.immutable,
    )


def policy_version():
    return ImmutabilityPolicyVersion.get_by_id(1).version


def bump_policy_version():
    ImmutabilityPolicyVersion.update(version=ImmutabilityPolicyVersion.version + 1).where(
        ImmutabilityPolicyVersion.id == 1
    ).execute()
    return policy_version()


def stored_policy(uuid):
    """The row of policy ``uuid`` from either policy table, or None."""
    return (
        NamespaceImmutabilityPolicy.get_or_none(NamespaceImmutabilityPolicy.uuid == uuid)
        or RepositoryImmutabilityPolicy.get_or_none(RepositoryImmutabilityPolicy.uuid == uuid)
    )


def policy_json(policy):
    """The ``policy`` column, as Quay stores it."""
    return {"tag_pattern": policy.tag_pattern, "tag_pattern_matches": policy.tag_pattern_matches}


# --- the audit log -----------------------------------------------------------------


def chain_head():
    """``(seq, hash)`` of the newest record, or ``(0, GENESIS_HASH)`` for an empty log."""
    last = LogEntry3.select().order_by(LogEntry3.id.desc()).first()
    if last is None:
        return 0, tagguard.GENESIS_HASH
    meta = json.loads(last.metadata_json)
    return meta["seq"], meta["hash"]


def append_log(entry):
    """Writes one record to ``logentry3``, linked by hash after the newest one; call it
    inside the change's transaction. ``metadata_json`` is the engine's Quay mapping
    (docs/audit.md): the record's metadata, the host's fields, and seq, hash, prev_hash."""
    seq, prev_hash = chain_head()
    row = entry.chained(seq + 1, prev_hash).quay_log_line()
    kind, _ = LogEntryKind.get_or_create(name=entry.kind)
    repository = None
    if entry.repository is not None:
        repository = repository_row(entry.namespace, entry.repository)
    LogEntry3.create(
        kind=kind,
        account=namespace_row(entry.namespace),
        performer=performer_row(entry.performer),
        repository=repository,
        datetime=datetime.fromisoformat(entry.time.replace("Z", "+00:00")).replace(tzinfo=None),
        ip=row["ip"],
        metadata_json=row["metadata_json"],
    )


def logs():
    """Every log row, oldest first, as Quay's logs API shows them (plus ``id``,
    ``repository``, and ``tag`` from the metadata)."""
    account, performer = User.alias(), User.alias()
    query = (
        LogEntry3.select(
            LogEntry3.id,
            LogEntryKind.name.alias("kind"),
            account.username.alias("namespace"),
            Repository.name.alias("repository"),
            performer.username.alias("performer"),
            LogEntry3.ip,
            LogEntry3.datetime,
            LogEntry3.metadata_json,
        )
        .join(LogEntryKind)
        .switch(LogEntry3)
        .join(account, on=(LogEntry3.account == account.id))
        .switch(LogEntry3)
        .join(performer, JOIN.LEFT_OUTER, on=(LogEntry3.performer == performer.id))
        .switch(LogEntry3)
        .join(Repository, JOIN.LEFT_OUTER)
        .order_by(LogEntry3.id)
        .dicts()
    )
    rows = []
    for row in query:
        metadata = json.loads(row.pop("metadata_json"))
        row["metadata"] = metadata
        row["performer"] = row["performer"] or "system"
        row["tag"] = metadata.get("tag") if isinstance(metadata.get("tag"), str) else None
        rows.append(row)
    return rows


# --- the engine's callbacks -------------------------------------------------------------


class QuayStore:
    """``tagguard.TagStore`` and ``tagguard.AuditSink`` over the tables of :mod:`.models`."""

    # TagStore

    def scan(self, request):
        query = alive_tags().where(
            Tag.id > request.after_id, Tag.hidden == False, User.username == request.namespace  # noqa: E712
        )
        if request.repository is not None:
            query = query.where(Repository.name == request.repository)
        return [engine_tag(row) for row in query.order_by(Tag.id).limit(request.limit)]

    def mark_immutable(self, changes):
        with db.atomic():
            changed = []
            for mark in changes:
                row = alive_tag_by_id(mark.tag_id)
                if row is None or row.immutable or row.hidden:
                    continue  # moved, deleted or marked since the scan: no change, no record
                Tag.update(immutable=True).where(Tag.id == row.id).execute()
                append_log(mark.entry)
                changed.append(row.id)
            return changed

    def mark_immutable_batch(self, batch):
        with db.atomic():
            rows = [alive_tag_by_id(ref.id) for ref in batch.tags]
            changed = [r.id for r in rows if r is not None and not r.immutable and not r.hidden]
            entry = batch.narrowed(changed)  # the record, listing only the tags that change
            if entry is None:
                return changed
            Tag.update(immutable=True).where(Tag.id.in_(changed)).execute()
            append_log(entry)
            return changed

    # AuditSink

    def commit(self, change, entries):
        with db.atomic():
            self._apply(change)
            for entry in entries:
                append_log(entry)

    def _apply(self, change):
        if isinstance(change, tagguard.NoChange):
            return
        if isinstance(change, tagguard.PutTag):
            self._put_tag(change)
        elif isinstance(change, tagguard.SetImmutable):
            row = self._alive(change.tag_id)
            Tag.update(immutable=change.immutable).where(Tag.id == row.id).execute()
        elif isinstance(change, tagguard.InsertPolicy):
            self._insert_policy(change.policy)
        elif isinstance(change, tagguard.UpdatePolicy):
            row = stored_policy(change.policy.uuid)
            if row is None:
                raise tagguard.SinkConflict(f"policy {change.policy.uuid} does not exist")
            row.policy = policy_json(change.policy)
            row.save()
            bump_policy_version()
        elif isinstance(change, tagguard.DeletePolicy):
            for table in (NamespaceImmutabilityPolicy, RepositoryImmutabilityPolicy):
                table.delete().where(table.uuid == change.uuid).execute()
            bump_policy_version()
        elif isinstance(change, tagguard.DeleteTags):
            rows = [self._alive_mutable(tag_id) for tag_id in change.tag_ids]
            self._end(rows, now_ms())
        elif isinstance(change, tagguard.SetExpiration):
            ids = [self._alive_mutable(tag_id).id for tag_id in change.tag_ids]
            Tag.update(expiration=change.expires_at).where(Tag.id.in_(ids)).execute()
        elif isinstance(change, tagguard.DeleteManifest):
            on_manifest = [
                row.id
                for row in alive_tags().where(
                    User.username == change.namespace,
                    Repository.name == change.repository,
                    Manifest.digest == change.digest,
                )
            ]
            if sorted(on_manifest) != sorted(change.tag_ids):
                raise tagguard.SinkConflict(
                    f"the tags on manifest {change.digest} changed while its delete was decided"
                )
            rows = [self._alive_mutable(tag_id) for tag_id in change.tag_ids]
            self._end(rows, now_ms())
        else:
            raise TypeError(f"unknown change {change!r}")

    def _put_tag(self, change):
        version = policy_version()
        if change.policy_version != version:
            raise tagguard.SinkConflict(
                f"the push of {change.name} was decided at policy version "
                f"{change.policy_version}, the policies are at version {version} now"
            )
        current = alive_tag(change.namespace, change.repository, change.name)
        if (current.id if current else None) != change.replaces:
            raise tagguard.SinkConflict(f"tag {change.name} changed while the push was decided")
        if current is not None and current.immutable:
            raise tagguard.SinkConflict(
                f"tag {change.name} became immutable while the push was decided"
            )
        now = now_ms()
        repository = repository_row(change.namespace, change.repository)
        manifest, _ = Manifest.get_or_create(repository=repository, digest=change.manifest_digest)
        if current is not None:
            self._end([current], now)
        Tag.create(
            name=change.name,
            repository=repository,
            manifest=manifest,
            lifetime_start_ms=now,
            immutable=change.immutable,
        )

    def _insert_policy(self, policy):
        if stored_policy(policy.uuid) is not None:
            raise tagguard.SinkConflict(f"policy {policy.uuid} already exists")
        version = bump_policy_version()
        namespace = namespace_row(policy.namespace)
        if policy.repository is None:
            NamespaceImmutabilityPolicy.create(
                uuid=policy.uuid,
                namespace=namespace,
                policy=policy_json(policy),
                created_version=version,
            )
        else:
            RepositoryImmutabilityPolicy.create(
                uuid=policy.uuid,
                repository=repository_row(policy.namespace, policy.repository),
                namespace=namespace,
                policy=policy_json(policy),
                created_version=version,
            )

    @staticmethod
    def _alive(tag_id):
        row = alive_tag_by_id(tag_id)
        if row is None:
            raise tagguard.SinkConflict(f"tag id {tag_id} is no longer alive")
        return row

    @classmethod
    def _alive_mutable(cls, tag_id):
        row = cls._alive(tag_id)
        if row.immutable:
            raise tagguard.SinkConflict(f"tag id {tag_id} became immutable meanwhile")
        return row

    @staticmethod
    def _end(rows, end_ms):
        """Ends the tags' lifetimes: a delete, or a move (the new row is inserted apart)."""
        ids = [row.id for row in rows]
        Tag.update(lifetime_end_ms=end_ms).where(Tag.id.in_(ids)).execute()
