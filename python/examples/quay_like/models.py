"""The tables, in Quay's shapes (quay/quay, data/database.py), as peewee models.

Only the columns the immutability path reads or writes are here. What Quay does not
have is marked ``not in Quay``: the policy-set version a push is decided at, the
creation order of policies across the two policy tables, and ``tag.expiration``.
"""

import json

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    SqliteDatabase,
    TextField,
)

# Quay binds its models to a proxy too, and initializes it at startup.
db = DatabaseProxy()


class JSONField(TextField):
    """JSON text in the database, Python values in the model (Quay's data/fields.py has the same)."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False  # table names as Quay's: logentrykind, logentry3, ...


class User(BaseModel):
    """Quay keeps accounts, robots and organizations (namespaces) in one table."""

    username = CharField(unique=True)
    organization = BooleanField(default=False)
    robot = BooleanField(default=False)

    class Meta:
        table_name = "user"


class Repository(BaseModel):
    namespace_user = ForeignKeyField(User)
    name = CharField()

    class Meta:
        indexes = ((("namespace_user", "name"), True),)


class Manifest(BaseModel):
    repository = ForeignKeyField(Repository)
    digest = CharField()
    media_type = CharField(default="application/vnd.oci.image.manifest.v1+json")
    manifest_bytes = TextField(default="")

    class Meta:
        indexes = ((("repository", "digest"), True),)


class Tag(BaseModel):
    """A tag's history: a move ends the alive row (``lifetime_end_ms``) and inserts a new one."""

    name = CharField()
    repository = ForeignKeyField(Repository)
    manifest = ForeignKeyField(Manifest)
    lifetime_start_ms = IntegerField()
    lifetime_end_ms = IntegerField(null=True)  # NULL: alive
    hidden = BooleanField(default=False)
    immutable = BooleanField(default=False)
    # Not in Quay. Quay stores an expiration as a future lifetime_end_ms; the tag then dies at that
    # time even if a policy made it immutable since. Like the reference registry, this
    # example keeps it apart, so only a decided and recorded delete ends a tag.
    expiration = CharField(null=True)


# At most one alive row per name (Quay's unique (repository, name, lifetime_end_ms)
# does not hold for NULL in SQL; a partial index does).
Tag.add_index(
    Tag.index(Tag.repository, Tag.name, unique=True).where(Tag.lifetime_end_ms.is_null())
)


class LogEntryKind(BaseModel):
    name = CharField(unique=True)

    class Meta:
        table_name = "logentrykind"


class LogEntry3(BaseModel):
    """Quay's log table. ``metadata_json`` carries the record's metadata, the host's
    fields (tag, performer kind, request id, plugin) and the hash chain's seq, hash
    and prev_hash, as docs/audit.md maps them."""

    kind = ForeignKeyField(LogEntryKind)
    account = ForeignKeyField(User, backref="logs_as_account")  # the namespace
    performer = ForeignKeyField(User, null=True, backref="logs_as_performer")  # NULL: the system
    repository = ForeignKeyField(Repository, null=True)
    datetime = DateTimeField()
    ip = CharField(null=True)
    metadata_json = TextField(default="{}")

    class Meta:
        table_name = "logentry3"
        indexes = (
            (("account", "datetime"), False),
            (("performer", "datetime"), False),
            (("repository", "datetime", "kind"), False),
        )


class NamespaceImmutabilityPolicy(BaseModel):
    uuid = CharField(unique=True)
    namespace = ForeignKeyField(User)
    policy = JSONField()  # {"tag_pattern": ..., "tag_pattern_matches": ...}
    # not in Quay: the policy version this policy's creation bumped to. It orders
    # the policies of both tables by creation, as the engine's mock registry does.
    created_version = IntegerField()

    class Meta:
        table_name = "namespaceimmutabilitypolicy"


class RepositoryImmutabilityPolicy(BaseModel):
    uuid = CharField(unique=True)
    repository = ForeignKeyField(Repository)
    namespace = ForeignKeyField(User)
    policy = JSONField()
    created_version = IntegerField()  # not in Quay; see NamespaceImmutabilityPolicy

    class Meta:
        table_name = "repositoryimmutabilitypolicy"


class ImmutabilityPolicyVersion(BaseModel):
    """Not in Quay: one row, bumped in the transaction of every policy change. A push
    names the version it read its policies at; the commit refuses an older one."""

    version = IntegerField(default=0)

    class Meta:
        table_name = "immutabilitypolicyversion"


ALL_MODELS = [
    User,
    Repository,
    Manifest,
    Tag,
    LogEntryKind,
    LogEntry3,
    NamespaceImmutabilityPolicy,
    RepositoryImmutabilityPolicy,
    ImmutabilityPolicyVersion,
]


def open_database(path=":memory:"):
    """Binds the models to a SQLite database at ``path`` and creates the tables.

    Writes take the lock when they begin (``BEGIN IMMEDIATE``), so a transaction
    that reads a tag and then changes it cannot be overtaken between the two.
    """
    if db.obj is not None and not db.is_closed():
        db.close()
    database = SqliteDatabase(
        path,
        pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000},
        lock_type="IMMEDIATE",
    )
    db.initialize(database)
    db.connect(reuse_if_open=True)
    db.create_tables(ALL_MODELS)
    if not ImmutabilityPolicyVersion.select().exists():
        ImmutabilityPolicyVersion.create(id=1, version=0)
    return database
