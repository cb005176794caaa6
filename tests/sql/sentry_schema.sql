-- Upstream Sentry's five tables that regression_tracking mirrors, as Django creates them for
-- Sentry's models on PostgreSQL: every column (modelled here or not) with its type, nullability,
-- database default, check constraint, key and index. Written from upstream's facts: the models in
-- src/sentry/models/{organization,project,group,grouphash}.py and
-- src/sentry/models/statistical_detectors.py, and the squashed migration that creates their tables.
--
-- The suite builds "a real Sentry database" from this file alone (no migrations, no Django tables):
-- tests/sentry_schema.py loads it, tests/test_sentry_schema.py checks the models against it, and
-- tests/test_sentry_database_mode.py and tests/test_packaging.py run the commands on it. Set
-- SENTRY_SCHEMA_SQL to load another DDL instead (e.g. one dumped from your Sentry). By hand:
--   psql "$URL" -c 'CREATE SCHEMA sentry'
--   PGOPTIONS='-c search_path=sentry' psql "$URL" -f tests/sql/sentry_schema.sql
--
-- Columns the models do not map carry defaults, so rows the models insert are accepted.

CREATE TABLE sentry_organization (
    id bigserial PRIMARY KEY,
    name varchar(64) NOT NULL,
    slug varchar(50) NOT NULL UNIQUE,
    status integer NOT NULL CHECK (status >= 0),
    date_added timestamp with time zone NOT NULL,
    default_role varchar(32) NOT NULL DEFAULT 'member',
    flags bigint NOT NULL DEFAULT 1,
    is_test boolean NOT NULL DEFAULT false
);
CREATE INDEX sentry_organization_slug_upper_idx ON sentry_organization (upper(slug));

CREATE TABLE sentry_project (
    id bigserial PRIMARY KEY,
    slug varchar(100) NULL,
    name varchar(200) NOT NULL,
    forced_color varchar(6) NULL,
    organization_id bigint NOT NULL REFERENCES sentry_organization (id) DEFERRABLE INITIALLY DEFERRED,
    public boolean NOT NULL DEFAULT false,
    date_added timestamp with time zone NOT NULL,
    status integer NOT NULL CHECK (status >= 0),
    first_event timestamp with time zone NULL,
    flags bigint NULL DEFAULT 10,
    platform varchar(64) NULL,
    template_id bigint NULL,
    external_id varchar(256) NULL,
    CONSTRAINT sentry_project_organization_id_slug_uniq UNIQUE (organization_id, slug)
);
CREATE INDEX sentry_project_organization_id_idx ON sentry_project (organization_id);
CREATE INDEX sentry_project_status_idx ON sentry_project (status);

-- Model Group. The culprit column is named "view"; GroupStatus and GroupSubStatus are integers.
CREATE TABLE sentry_groupedmessage (
    id bigserial PRIMARY KEY,
    logger varchar(64) NOT NULL DEFAULT '',
    level integer NOT NULL CHECK (level >= 0),
    message text NOT NULL,
    "view" varchar(200) NULL,
    num_comments integer NULL CHECK (num_comments >= 0),
    platform varchar(64) NULL,
    status integer NOT NULL CHECK (status >= 0),
    substatus integer NULL,
    times_seen integer NOT NULL CHECK (times_seen >= 0),
    last_seen timestamp with time zone NOT NULL,
    first_seen timestamp with time zone NOT NULL,
    first_release_id bigint NULL,
    resolved_at timestamp with time zone NULL,
    active_at timestamp with time zone NULL,
    time_spent_total integer NOT NULL DEFAULT 0,
    time_spent_count integer NOT NULL DEFAULT 0,
    is_public boolean NULL DEFAULT false,
    data text NULL,
    short_id bigint NULL,
    type integer NOT NULL DEFAULT 1 CHECK (type >= 0),
    priority integer NULL,
    priority_locked_at timestamp with time zone NULL,
    seer_fixability_score double precision NULL,
    seer_autofix_last_triggered timestamp with time zone NULL,
    project_id bigint NOT NULL REFERENCES sentry_project (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT sentry_groupedmessage_project_id_short_id_uniq UNIQUE (project_id, short_id),
    CONSTRAINT sentry_groupedmessage_project_id_id_uniq UNIQUE (project_id, id)
);
CREATE INDEX sentry_groupedmessage_project_id_idx ON sentry_groupedmessage (project_id);
CREATE INDEX sentry_groupedmessage_status_idx ON sentry_groupedmessage (status);
CREATE INDEX sentry_groupedmessage_last_seen_idx ON sentry_groupedmessage (last_seen);
CREATE INDEX sentry_groupedmessage_first_seen_idx ON sentry_groupedmessage (first_seen);
CREATE INDEX sentry_groupedmessage_type_idx ON sentry_groupedmessage (type);
CREATE INDEX sentry_grou_project_status_substatus_id_idx ON sentry_groupedmessage (project_id, status, substatus, id);
CREATE INDEX sentry_grou_status_substatus_id_idx ON sentry_groupedmessage (status, substatus, id);

-- A discarded issue leaves its hash with group_id NULL and a group_tombstone_id; state 1 = locked
-- in migration.
CREATE TABLE sentry_grouphash (
    id bigserial PRIMARY KEY,
    hash varchar(32) NOT NULL,
    group_tombstone_id integer NULL CHECK (group_tombstone_id >= 0),
    state integer NULL CHECK (state >= 0),
    group_id bigint NULL REFERENCES sentry_groupedmessage (id) DEFERRABLE INITIALLY DEFERRED,
    project_id bigint NULL REFERENCES sentry_project (id) DEFERRABLE INITIALLY DEFERRED,
    date_added timestamp with time zone NULL,
    CONSTRAINT sentry_grouphash_project_id_hash_uniq UNIQUE (project_id, hash)
);
CREATE INDEX sentry_grouphash_group_id_idx ON sentry_grouphash (group_id);
CREATE INDEX sentry_grouphash_project_id_idx ON sentry_grouphash (project_id);
CREATE INDEX sentry_grouphash_group_tombstone_id_idx ON sentry_grouphash (group_tombstone_id);

-- Upstream: project_id is a bare BoundedBigIntegerField (no foreign key: a regression outlives its
-- project), type a plain BoundedIntegerField (RegressionType ENDPOINT=0, FUNCTION=1).
CREATE TABLE sentry_regressiongroup (
    id bigserial PRIMARY KEY,
    date_added timestamp with time zone NOT NULL,
    date_updated timestamp with time zone NOT NULL,
    date_regressed timestamp with time zone NOT NULL,
    date_resolved timestamp with time zone NULL,
    version integer NOT NULL,
    active boolean NOT NULL,
    project_id bigint NOT NULL,
    type integer NOT NULL,
    fingerprint varchar(64) NOT NULL,
    baseline double precision NOT NULL,
    regressed double precision NOT NULL,
    CONSTRAINT sentry_regressiongroup_type_project_id_fingerprint_version_uniq UNIQUE (type, project_id, fingerprint, version)
);
CREATE INDEX sentry_regressiongroup_project_id_idx ON sentry_regressiongroup (project_id);
CREATE INDEX sentry_regr_type_3a29e7_idx ON sentry_regressiongroup (type, project_id, fingerprint, active);
