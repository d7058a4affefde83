//! The coordinator's embedded database: jobs, rounds, models, audit log and parties.
//!
//! One SQLite file, `coordinator.db`, through rusqlite with the bundled SQLite, in WAL mode
//! (write-ahead logging, <https://sqlite.org/wal.html>) with `synchronous = NORMAL`: a commit is
//! durable against a process crash, and against power loss up to the last checkpoint of the
//! log. Foreign keys are enforced. The schema is versioned with `PRAGMA user_version` and
//! migrated forward in order on open; a file written by a newer coordinator is refused.
//!
//! Every state change that must stay consistent is one transaction: a round is recorded
//! together with the checkpoint and progress it produced ([`Store::complete_round`]), and a
//! model together with its job becoming `succeeded` ([`Store::finish_job`]), so a crash never
//! leaves one without the other. Times are unix milliseconds; JSON is stored as text.
//!
//! [`Store`] is `Send + Sync` (a mutex around one connection); calls are short and may be made
//! from async code directly or through `tokio::task::spawn_blocking`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use serde::{Deserialize, Serialize};

/// File name of the database inside the coordinator's data directory.
pub const DB_FILE: &str = "coordinator.db";

/// Migrations in order; migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        error TEXT,
        rounds_done INTEGER NOT NULL DEFAULT 0 CHECK (rounds_done >= 0),
        checkpoint BLOB,
        progress_json TEXT,
        metrics_json TEXT,
        model_id TEXT REFERENCES models(id)
    );
    CREATE INDEX jobs_by_created ON jobs (created_ms);
    CREATE TABLE rounds (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        round INTEGER NOT NULL CHECK (round >= 0),
        attempts INTEGER NOT NULL,
        contributors_json TEXT NOT NULL,
        dropped_json TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER NOT NULL,
        what TEXT NOT NULL,
        PRIMARY KEY (job_id, round)
    );
    CREATE TABLE models (
        id TEXT PRIMARY KEY NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        created_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        artifact_json TEXT NOT NULL,
        metrics_json TEXT NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        job_id TEXT,
        round INTEGER,
        party TEXT NOT NULL,
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        kind TEXT NOT NULL,
        bytes INTEGER NOT NULL CHECK (bytes >= 0),
        outcome TEXT NOT NULL
    );
    CREATE INDEX audit_by_job ON audit (job_id, seq);
    CREATE TABLE parties (
        name TEXT PRIMARY KEY NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL
    );",
    // Version 2: transcripts, when the coordinator records them (`record_transcripts`).
    "CREATE TABLE transcripts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        round INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        party TEXT NOT NULL,
        kind TEXT NOT NULL,
        ring_bits INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX transcripts_by_job ON transcripts (job_id, round);",
    // Version 3: the fedcredit version each party said hello with, and the address it last
    // connected from.
    "ALTER TABLE parties ADD COLUMN version TEXT NOT NULL DEFAULT '';
    ALTER TABLE parties ADD COLUMN address TEXT NOT NULL DEFAULT '';",
    // Version 4: the append-only part of a job's checkpoint (a GBDT's finished trees), so a
    // step rewrites only the small rest in `jobs.checkpoint`.
    "CREATE TABLE checkpoint_log (
        job_id TEXT NOT NULL REFERENCES jobs(id),
        seq INTEGER NOT NULL CHECK (seq >= 0),
        entry BLOB NOT NULL,
        PRIMARY KEY (job_id, seq)
    );",
    // Version 5: the model registry. Every model is a version of the model named after its
    // job; `serving` logs which version of a name serves (the last row is the current one).
    "CREATE TABLE model_versions (
        name TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version >= 1),
        model_id TEXT NOT NULL UNIQUE REFERENCES models(id),
        PRIMARY KEY (name, version)
    );
    CREATE TABLE serving (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('first', 'promote', 'rollback')),
        FOREIGN KEY (name, version) REFERENCES model_versions(name, version)
    );
    INSERT INTO model_versions (name, version, model_id)
        SELECT j.name,
               ROW_NUMBER() OVER (PARTITION BY j.name ORDER BY m.created_ms, m.rowid),
               m.id
        FROM models m JOIN jobs j ON j.id = m.job_id;
    INSERT INTO serving (name, version, at_ms, action)
        SELECT v.name, 1, m.created_ms, 'first'
        FROM model_versions v JOIN models m ON m.id = v.model_id
        WHERE v.version = 1 ORDER BY m.created_ms;",
    // Version 6: the scoring service. Score history per enterprise and model name (a row
    // when a score or a party's snapshot changed), alerts, and the ecosystem health index per
    // period.
    "CREATE TABLE score_history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        enterprise TEXT NOT NULL,
        version INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        pd REAL NOT NULL,
        points REAL NOT NULL,
        band TEXT NOT NULL,
        cause TEXT NOT NULL,
        parties_json TEXT NOT NULL
    );
    CREATE INDEX score_history_by_enterprise ON score_history (model, enterprise, seq);
    CREATE TABLE alerts (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        model TEXT NOT NULL,
        enterprise TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE ecosystem (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        idx REAL NOT NULL,
        mean_points REAL NOT NULL,
        enterprises INTEGER NOT NULL,
        cause TEXT NOT NULL
    );
    CREATE TABLE progress_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id),
        at_ms INTEGER NOT NULL,
        progress_json TEXT NOT NULL
    );
    CREATE INDEX progress_log_by_job ON progress_log (job_id, seq);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Errors of the store. Each names the operation, the table and the job (or other key).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} has schema version {found}, newer than the version {supported} this coordinator knows; use a newer fedcredit"
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("migrating the database {path} to schema version {version} failed: {source}")]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{op} in table {table} ({key}) failed: {source}")]
    Sql {
        op: &'static str,
        table: &'static str,
        key: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{op}: job {job_id:?} does not exist")]
    UnknownJob { op: &'static str, job_id: String },
    #[error("model `{name}` has no version {version}")]
    UnknownModelVersion { name: String, version: i64 },
    #[error("model `{name}` has no earlier serving version to roll back to")]
    NothingToRollBack { name: String },
    #[error("{op} in table {table} ({key}): {what} {value} does not fit in a SQLite integer")]
    OutOfRange {
        op: &'static str,
        table: &'static str,
        key: String,
        what: &'static str,
        value: u64,
    },
}

/// Lifecycle of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job will not run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown job state or audit direction name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    what: &'static str,
    value: String,
}

impl FromStr for JobState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return Err(UnknownName { what: "job state", value: s.to_owned() }),
        })
    }
}

/// Direction of an audited message, seen from the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from the party.
    In,
    /// Sent to the party.
    Out,
}

impl Direction {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl FromStr for Direction {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            _ => Err(UnknownName { what: "audit direction", value: s.to_owned() }),
        }
    }
}

macro_rules! sql_text_enum {
    ($ty:ty) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
sql_text_enum!(JobState);
sql_text_enum!(Direction);

/// A job to insert; it starts `queued` with no rounds done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub id: String,
    pub name: String,
    pub spec_json: String,
    pub created_ms: i64,
}

/// A row of `jobs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub spec_json: String,
    pub state: JobState,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Why the job failed or was cancelled.
    pub error: Option<String>,
    /// Rounds completed: the next round to run.
    pub rounds_done: u32,
    /// Trainer state after the last completed round, to resume from.
    pub checkpoint: Option<Vec<u8>>,
    pub progress_json: Option<String>,
    /// Final metrics, set by [`Store::finish_job`].
    pub metrics_json: Option<String>,
    /// The model the job produced, set by [`Store::finish_job`].
    pub model_id: Option<String>,
}

/// A row of `rounds`: one completed round of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundRecord {
    pub job_id: String,
    pub round: u32,
    /// Attempts the round needed (restarts after dropouts).
    pub attempts: u32,
    pub contributors_json: String,
    pub dropped_json: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    /// What the round computed (e.g. "gradient", "histograms").
    pub what: String,
}

/// A row of `models`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRecord {
    pub id: String,
    pub job_id: String,
    pub created_ms: i64,
    pub kind: String,
    pub artifact_json: String,
    pub metrics_json: String,
}

/// A version of a registered model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub model_id: String,
    pub job_id: String,
    pub created_ms: i64,
    pub kind: String,
    pub metrics_json: String,
    /// Whether this version serves.
    pub serving: bool,
}

/// A row of `audit`: one message to or from a party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the store: `None` when writing, `Some` when read back.
    pub seq: Option<i64>,
    pub at_ms: i64,
    pub job_id: Option<String>,
    pub round: Option<u32>,
    pub party: String,
    pub direction: Direction,
    pub kind: String,
    pub bytes: u64,
    pub outcome: String,
}

/// A row of `transcripts`: one message as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriptEntry {
    pub job_id: String,
    pub round: u32,
    pub attempt: u32,
    pub party: String,
    /// `masked_input`, `consistency`, `unmask`, `step_failed`, or `secagg` / `protocol` for
    /// other messages.
    pub kind: String,
    /// Ring width of a packed masked vector (0 for other kinds).
    pub ring_bits: u32,
    /// The message as received (packed masked vector, or its protobuf encoding).
    pub payload: Vec<u8>,
}

/// A row of `parties`: when a party was first and last heard from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyRecord {
    pub name: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// A row of `parties` with what its last `Hello` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyDetail {
    pub name: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The fedcredit version of its last `Hello` (empty when it was recorded before schema
    /// version 3).
    pub version: String,
    /// The address it last connected from (empty when unknown).
    pub address: String,
}

/// The coordinator database. See the module documentation.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const JOB_COLUMNS: &str = "id, name, spec_json, state, created_ms, updated_ms, error, \
     rounds_done, checkpoint, progress_json, metrics_json, model_id";
/// The job columns of listings: the checkpoint (up to megabytes per job) is left out; read a
/// job with [`Store::job`] to get it.
const JOB_LIST_COLUMNS: &str = "id, name, spec_json, state, created_ms, updated_ms, error, \
     rounds_done, NULL, progress_json, metrics_json, model_id";
const MODEL_COLUMNS: &str = "id, job_id, created_ms, kind, artifact_json, metrics_json";
const AUDIT_COLUMNS: &str = "seq, at_ms, job_id, round, party, direction, kind, bytes, outcome";

fn read_job(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    Ok(JobRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        spec_json: row.get(2)?,
        state: row.get(3)?,
        created_ms: row.get(4)?,
        updated_ms: row.get(5)?,
        error: row.get(6)?,
        rounds_done: row.get(7)?,
        checkpoint: row.get(8)?,
        progress_json: row.get(9)?,
        metrics_json: row.get(10)?,
        model_id: row.get(11)?,
    })
}

fn read_round(row: &Row<'_>) -> rusqlite::Result<RoundRecord> {
    Ok(RoundRecord {
        job_id: row.get(0)?,
        round: row.get(1)?,
        attempts: row.get(2)?,
        contributors_json: row.get(3)?,
        dropped_json: row.get(4)?,
        started_ms: row.get(5)?,
        finished_ms: row.get(6)?,
        what: row.get(7)?,
    })
}

fn read_model(row: &Row<'_>) -> rusqlite::Result<ModelRecord> {
    Ok(ModelRecord {
        id: row.get(0)?,
        job_id: row.get(1)?,
        created_ms: row.get(2)?,
        kind: row.get(3)?,
        artifact_json: row.get(4)?,
        metrics_json: row.get(5)?,
    })
}

fn read_audit(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let bytes: i64 = row.get(7)?;
    let bytes = u64::try_from(bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, Type::Integer, Box::new(e)))?;
    Ok(AuditEntry {
        seq: Some(row.get(0)?),
        at_ms: row.get(1)?,
        job_id: row.get(2)?,
        round: row.get(3)?,
        party: row.get(4)?,
        direction: row.get(5)?,
        kind: row.get(6)?,
        bytes,
        outcome: row.get(8)?,
    })
}

/// Attaches the operation, table and key to a rusqlite error.
fn ctx(
    op: &'static str,
    table: &'static str,
    key: impl Into<String>,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let key = key.into();
    move |source| StoreError::Sql { op, table, key, source }
}

fn job_key(id: &str) -> String {
    format!("job {id:?}")
}

impl Store {
    /// Opens (creating if needed) `dir/coordinator.db`, creating `dir` too, and migrates the
    /// schema to [`SCHEMA_VERSION`]. Refuses a database from a newer schema.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::CreateDir { dir: dir.to_owned(), source })?;
        let path = dir.join(DB_FILE);
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        let found: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path, found, supported: SCHEMA_VERSION });
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, WAL is required"
            ))));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(open_err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
            let version = i as i64 + 1;
            let migrate_err = |source| StoreError::Migrate { path: path.clone(), version, source };
            let tx = conn.transaction().map_err(migrate_err)?;
            tx.execute_batch(sql).map_err(migrate_err)?;
            tx.pragma_update(None, "user_version", version).map_err(migrate_err)?;
            tx.commit().map_err(migrate_err)?;
        }
        Ok(Store { path, conn: Mutex::new(conn) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held rolled back any open transaction (Transaction rolls
        // back on drop), so the connection is consistent and can be used again.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts a new job in state `queued`.
    pub fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO jobs (id, name, spec_json, state, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
            )
            .and_then(|mut s| s.execute(params![job.id, job.name, job.spec_json, job.created_ms]))
            .map_err(ctx("insert job", "jobs", job_key(&job.id)))?;
        Ok(())
    }

    /// One job, or `None` if there is none with this id.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.conn()
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], read_job).optional())
            .map_err(ctx("read job", "jobs", job_key(id)))
    }

    /// All jobs, newest first.
    /// (Listings carry no checkpoint.)
    pub fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.select_jobs("ORDER BY created_ms DESC, rowid DESC", "list jobs")
    }

    /// Jobs that are `queued` or `running` (to resume after a restart), oldest first.
    pub fn unfinished_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.select_jobs(
            "WHERE state IN ('queued', 'running') ORDER BY created_ms ASC, rowid ASC",
            "list unfinished jobs",
        )
    }

    fn select_jobs(&self, tail: &str, op: &'static str) -> Result<Vec<JobRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {JOB_LIST_COLUMNS} FROM jobs {tail}"))
            .map_err(ctx(op, "jobs", "all jobs"))?;
        stmt.query_map([], read_job)
            .and_then(|rows| rows.collect())
            .map_err(ctx(op, "jobs", "all jobs"))
    }

    /// Sets a job's state and error (cleared when `None`). Errors if the job does not exist.
    pub fn set_job_state(
        &self,
        id: &str,
        state: JobState,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let n = self
            .conn()
            .prepare_cached("UPDATE jobs SET state = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, state, error, now_ms]))
            .map_err(ctx("set job state", "jobs", job_key(id)))?;
        if n == 0 {
            return Err(StoreError::UnknownJob { op: "set job state", job_id: id.to_owned() });
        }
        Ok(())
    }

    /// Records a completed round and, in the same transaction, the job's new checkpoint
    /// (`checkpoint`, and `log` appended to its log as entries `log_from`, `log_from + 1`, …),
    /// progress and `rounds_done = round + 1`. Either all of it is stored or none.
    pub fn complete_round(
        &self,
        round: &RoundRecord,
        checkpoint: &[u8],
        log_from: usize,
        log: &[Vec<u8>],
        progress_json: &str,
    ) -> Result<(), StoreError> {
        let key = format!("job {:?} round {}", round.job_id, round.round);
        let op = "complete round";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(ctx(op, "rounds", key.clone()))?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
            .and_then(|mut s| s.exists([&round.job_id]))
            .map_err(ctx(op, "jobs", key.clone()))?;
        if !exists {
            return Err(StoreError::UnknownJob { op, job_id: round.job_id.clone() });
        }
        tx.prepare_cached(
            "INSERT INTO rounds (job_id, round, attempts, contributors_json, dropped_json,
                                 started_ms, finished_ms, what)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                round.job_id,
                round.round,
                round.attempts,
                round.contributors_json,
                round.dropped_json,
                round.started_ms,
                round.finished_ms,
                round.what
            ])
        })
        .map_err(ctx(op, "rounds", key.clone()))?;
        tx.prepare_cached(
            "UPDATE jobs SET rounds_done = ?2, checkpoint = ?3, progress_json = ?4,
                             updated_ms = ?5
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                round.job_id,
                i64::from(round.round) + 1,
                checkpoint,
                progress_json,
                round.finished_ms
            ])
        })
        .map_err(ctx(op, "jobs", key.clone()))?;
        for (i, entry) in log.iter().enumerate() {
            let seq = i64::try_from(log_from + i).map_err(|_| StoreError::OutOfRange {
                op,
                table: "checkpoint_log",
                key: key.clone(),
                what: "seq",
                value: (log_from + i) as u64,
            })?;
            tx.prepare_cached(
                "INSERT INTO checkpoint_log (job_id, seq, entry) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![round.job_id, seq, entry]))
            .map_err(ctx(op, "checkpoint_log", key.clone()))?;
        }
        tx.commit().map_err(ctx(op, "rounds", key))
    }

    /// The log part of a job's checkpoint, in order.
    pub fn checkpoint_log(&self, job_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let op = "read checkpoint log";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT entry FROM checkpoint_log WHERE job_id = ?1 ORDER BY seq")
            .map_err(ctx(op, "checkpoint_log", job_key(job_id)))?;
        stmt.query_map([job_id], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(ctx(
            op,
            "checkpoint_log",
            job_key(job_id),
        ))
    }

    /// The completed rounds of a job, in round order.
    pub fn rounds(&self, job_id: &str) -> Result<Vec<RoundRecord>, StoreError> {
        let op = "list rounds";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT job_id, round, attempts, contributors_json, dropped_json, started_ms,
                        finished_ms, what
                 FROM rounds WHERE job_id = ?1 ORDER BY round",
            )
            .map_err(ctx(op, "rounds", job_key(job_id)))?;
        stmt.query_map([job_id], read_round).and_then(|rows| rows.collect()).map_err(ctx(
            op,
            "rounds",
            job_key(job_id),
        ))
    }

    /// Finishes a job in one transaction: inserts its model (if any) and sets the job
    /// `succeeded` with `metrics_json`, the model id, and no error.
    pub fn finish_job(
        &self,
        job_id: &str,
        model: Option<&ModelRecord>,
        metrics_json: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let op = "finish job";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(ctx(op, "jobs", job_key(job_id)))?;
        if let Some(m) = model {
            tx.prepare_cached(&format!(
                "INSERT INTO models ({MODEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    m.id,
                    m.job_id,
                    m.created_ms,
                    m.kind,
                    m.artifact_json,
                    m.metrics_json
                ])
            })
            .map_err(ctx(op, "models", format!("job {job_id:?} model {:?}", m.id)))?;
            // The next version of the model named after the job; the first version of a name
            // serves at once, later ones when promoted.
            let key = || format!("job {job_id:?} model {:?}", m.id);
            let version: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(v.version), 0) + 1 FROM model_versions v
                     WHERE v.name = (SELECT name FROM jobs WHERE id = ?1)",
                    [job_id],
                    |r| r.get(0),
                )
                .map_err(ctx(op, "model_versions", key()))?;
            tx.execute(
                "INSERT INTO model_versions (name, version, model_id)
                 SELECT name, ?2, ?3 FROM jobs WHERE id = ?1",
                params![job_id, version, m.id],
            )
            .map_err(ctx(op, "model_versions", key()))?;
            if version == 1 {
                tx.execute(
                    "INSERT INTO serving (name, version, at_ms, action)
                     SELECT name, 1, ?2, 'first' FROM jobs WHERE id = ?1",
                    params![job_id, now_ms],
                )
                .map_err(ctx(op, "serving", key()))?;
            }
        }
        let n = tx
            .prepare_cached(
                "UPDATE jobs SET state = 'succeeded', error = NULL, metrics_json = ?2,
                                 model_id = ?3, updated_ms = ?4
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![job_id, metrics_json, model.map(|m| &m.id), now_ms])
            })
            .map_err(ctx(op, "jobs", job_key(job_id)))?;
        if n == 0 {
            return Err(StoreError::UnknownJob { op, job_id: job_id.to_owned() });
        }
        tx.commit().map_err(ctx(op, "jobs", job_key(job_id)))
    }

    /// All models, newest first.
    pub fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let op = "list models";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {MODEL_COLUMNS} FROM models ORDER BY created_ms DESC, rowid DESC"
            ))
            .map_err(ctx(op, "models", "all models"))?;
        stmt.query_map([], read_model).and_then(|rows| rows.collect()).map_err(ctx(
            op,
            "models",
            "all models",
        ))
    }

    /// The versions of the model named `name`, oldest first, with the one serving marked;
    /// empty for an unknown name.
    pub fn model_versions(&self, name: &str) -> Result<Vec<ModelVersion>, StoreError> {
        let op = "list model versions";
        let conn = self.conn();
        let serving = Self::serving_in(&conn, name).map_err(ctx(op, "serving", name))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT v.version, v.model_id, m.job_id, m.created_ms, m.kind, m.metrics_json
                 FROM model_versions v JOIN models m ON m.id = v.model_id
                 WHERE v.name = ?1 ORDER BY v.version",
            )
            .map_err(ctx(op, "model_versions", name))?;
        stmt.query_map([name], |r| {
            let version: i64 = r.get(0)?;
            Ok(ModelVersion {
                name: name.to_owned(),
                version,
                model_id: r.get(1)?,
                job_id: r.get(2)?,
                created_ms: r.get(3)?,
                kind: r.get(4)?,
                metrics_json: r.get(5)?,
                serving: serving == Some(version),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(ctx(op, "model_versions", name))
    }

    /// Every registered name with its latest and serving versions, by name.
    pub fn model_names(&self) -> Result<Vec<(String, i64, Option<i64>)>, StoreError> {
        let op = "list model names";
        let conn = self.conn();
        let names: Vec<(String, i64)> = conn
            .prepare_cached(
                "SELECT name, MAX(version) FROM model_versions GROUP BY name ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|rows| rows.collect())
            })
            .map_err(ctx(op, "model_versions", "all names"))?;
        names
            .into_iter()
            .map(|(n, latest)| {
                let serving = Self::serving_in(&conn, &n).map_err(ctx(op, "serving", n.clone()))?;
                Ok((n, latest, serving))
            })
            .collect()
    }

    fn serving_in(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
        conn.prepare_cached(
            "SELECT version FROM serving WHERE name = ?1 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([name], |r| r.get(0))
        .optional()
    }

    /// Makes `version` of `name` the serving version; returns the version it replaced.
    ///
    /// # Errors
    /// [`StoreError::UnknownModelVersion`] when the name has no such version.
    pub fn promote(
        &self,
        name: &str,
        version: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let op = "promote model";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(ctx(op, "serving", name))?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM model_versions WHERE name = ?1 AND version = ?2)",
                params![name, version],
                |r| r.get(0),
            )
            .map_err(ctx(op, "model_versions", name))?;
        if !exists {
            return Err(StoreError::UnknownModelVersion { name: name.to_owned(), version });
        }
        let before = Self::serving_in(&tx, name).map_err(ctx(op, "serving", name))?;
        if before != Some(version) {
            tx.execute(
                "INSERT INTO serving (name, version, at_ms, action) VALUES (?1, ?2, ?3, 'promote')",
                params![name, version, now_ms],
            )
            .map_err(ctx(op, "serving", name))?;
        }
        tx.commit().map_err(ctx(op, "serving", name))?;
        Ok(before)
    }

    /// Serves again the version of `name` that served before the current one; returns
    /// `(from, to)`.
    ///
    /// # Errors
    /// [`StoreError::NothingToRollBack`] when no other version of the name ever served.
    pub fn rollback(&self, name: &str, now_ms: i64) -> Result<(i64, i64), StoreError> {
        let op = "roll back model";
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(ctx(op, "serving", name))?;
        let log: Vec<i64> = tx
            .prepare_cached("SELECT version FROM serving WHERE name = ?1 ORDER BY seq DESC")
            .and_then(|mut s| s.query_map([name], |r| r.get(0)).and_then(|r| r.collect()))
            .map_err(ctx(op, "serving", name))?;
        let Some(&current) = log.first() else {
            return Err(StoreError::NothingToRollBack { name: name.to_owned() });
        };
        let Some(&previous) = log.iter().find(|v| **v != current) else {
            return Err(StoreError::NothingToRollBack { name: name.to_owned() });
        };
        tx.execute(
            "INSERT INTO serving (name, version, at_ms, action) VALUES (?1, ?2, ?3, 'rollback')",
            params![name, previous, now_ms],
        )
        .map_err(ctx(op, "serving", name))?;
        tx.commit().map_err(ctx(op, "serving", name))?;
        Ok((current, previous))
    }

    /// Appends a job's progress (after an epoch, round or tree).
    pub fn log_progress(&self, job_id: &str, at_ms: i64, json: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO progress_log (job_id, at_ms, progress_json) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![job_id, at_ms, json]))
            .map(|_| ())
            .map_err(ctx("log progress", "progress_log", job_id))
    }

    /// A job's progress log, oldest first: `(at_ms, progress JSON)`.
    pub fn progress_log(&self, job_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT at_ms, progress_json FROM progress_log WHERE job_id = ?1 ORDER BY seq",
            )
            .and_then(|mut s| s.query_map([job_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(ctx("read progress", "progress_log", job_id))
    }

    /// One model, or `None`.
    pub fn model(&self, id: &str) -> Result<Option<ModelRecord>, StoreError> {
        self.conn()
            .prepare_cached(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = ?1"))
            .and_then(|mut s| s.query_row([id], read_model).optional())
            .map_err(ctx("read model", "models", format!("model {id:?}")))
    }

    /// Appends an audit entry (its `seq` is ignored) and returns the sequence number assigned.
    pub fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let op = "append audit entry";
        let key =
            || format!("party {:?} job {:?} kind {:?}", entry.party, entry.job_id, entry.kind);
        let bytes = i64::try_from(entry.bytes).map_err(|_| StoreError::OutOfRange {
            op,
            table: "audit",
            key: key(),
            what: "bytes",
            value: entry.bytes,
        })?;
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO audit (at_ms, job_id, round, party, direction, kind, bytes, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                entry.at_ms,
                entry.job_id,
                entry.round,
                entry.party,
                entry.direction,
                entry.kind,
                bytes,
                entry.outcome
            ])
        })
        .map_err(ctx(op, "audit", key()))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records one message exactly as the coordinator received it (masked vectors packed at
    /// `ring_bits` bits per element), for privacy audits.
    pub fn record_transcript(&self, entry: &TranscriptEntry) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO transcripts (job_id, round, attempt, party, kind, ring_bits, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    entry.job_id,
                    entry.round,
                    entry.attempt,
                    entry.party,
                    entry.kind,
                    entry.ring_bits,
                    entry.payload
                ])
            })
            .map_err(ctx("record transcript", "transcripts", job_key(&entry.job_id)))?;
        Ok(())
    }

    /// Every recorded message of a job, in arrival order.
    pub fn transcripts(&self, job_id: &str) -> Result<Vec<TranscriptEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT job_id, round, attempt, party, kind, ring_bits, payload FROM transcripts
                 WHERE job_id = ?1 ORDER BY seq",
            )
            .map_err(ctx("read transcripts", "transcripts", job_key(job_id)))?;
        stmt.query_map([job_id], |r| {
            Ok(TranscriptEntry {
                job_id: r.get(0)?,
                round: r.get(1)?,
                attempt: r.get(2)?,
                party: r.get(3)?,
                kind: r.get(4)?,
                ring_bits: r.get(5)?,
                payload: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(ctx("read transcripts", "transcripts", job_key(job_id)))
    }

    /// The latest `limit` audit entries, of one job or of all, newest first.
    pub fn audit_log(
        &self,
        job: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let op = "read audit log";
        let key = job.map_or_else(|| "all jobs".to_owned(), job_key);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let sql = if job.is_some() {
            format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE job_id = ?1 ORDER BY seq DESC LIMIT ?2"
            )
        } else {
            format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE ?1 IS NULL ORDER BY seq DESC LIMIT ?2")
        };
        let mut stmt = conn.prepare_cached(&sql).map_err(ctx(op, "audit", key.clone()))?;
        stmt.query_map(params![job, limit], read_audit)
            .and_then(|rows| rows.collect())
            .map_err(ctx(op, "audit", key))
    }

    /// Notes that a party was heard from at `now_ms`.
    pub fn touch_party(&self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO parties (name, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?2)
                 ON CONFLICT (name) DO UPDATE SET
                     first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
                     last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
            )
            .and_then(|mut s| s.execute(params![name, now_ms]))
            .map_err(ctx("touch party", "parties", format!("party {name:?}")))?;
        Ok(())
    }

    /// Notes a party's `Hello` at `now_ms`: when, with which fedcredit version, from where.
    pub fn record_hello(
        &self,
        name: &str,
        now_ms: i64,
        version: &str,
        address: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO parties (name, first_seen_ms, last_seen_ms, version, address)
                 VALUES (?1, ?2, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET
                     first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
                     last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),
                     version = excluded.version,
                     address = excluded.address",
            )
            .and_then(|mut s| s.execute(params![name, now_ms, version, address]))
            .map_err(ctx("record hello", "parties", format!("party {name:?}")))?;
        Ok(())
    }

    /// Every party ever heard from, by name, with its last `Hello`'s version and address.
    pub fn party_details(&self) -> Result<Vec<PartyDetail>, StoreError> {
        let op = "list parties";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, first_seen_ms, last_seen_ms, version, address FROM parties
                 ORDER BY name",
            )
            .map_err(ctx(op, "parties", "all parties"))?;
        stmt.query_map([], |r| {
            Ok(PartyDetail {
                name: r.get(0)?,
                first_seen_ms: r.get(1)?,
                last_seen_ms: r.get(2)?,
                version: r.get(3)?,
                address: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(ctx(op, "parties", "all parties"))
    }

    /// Every party ever heard from, by name.
    pub fn parties(&self) -> Result<Vec<PartyRecord>, StoreError> {
        let op = "list parties";
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, first_seen_ms, last_seen_ms FROM parties ORDER BY name")
            .map_err(ctx(op, "parties", "all parties"))?;
        stmt.query_map([], |r| {
            Ok(PartyRecord { name: r.get(0)?, first_seen_ms: r.get(1)?, last_seen_ms: r.get(2)? })
        })
        .and_then(|rows| rows.collect())
        .map_err(ctx(op, "parties", "all parties"))
    }
}

#[cfg(test)]
mod tests;
