//! The ClickHouse schema as versioned SQL migrations (`crates/sink/migrations/`,
//! embedded), and [`migrate`], which applies the missing ones.
//!
//! `migrate` is idempotent and safe to run on every start: it creates the
//! database and `schema_migrations` when missing, refuses a database whose
//! schema is newer than this build knows, runs each missing migration
//! (statements written with `IF NOT EXISTS`, so one cut short by a crash is
//! simply run again) and records its version, then brings the table's TTL to
//! the configured one.

use clickhouse::Client;

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, increasing from 1.
    pub version: u32,
    /// Short name (the file name without the number).
    pub name: &'static str,
    /// The SQL, with `{{database}}` and `{{ttl}}` placeholders.
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "llm_calls",
    sql: include_str!("../../migrations/0001_llm_calls.sql"),
}];

/// The schema version this build writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// ClickHouse refused a statement or could not be reached.
    #[error("{what}: {source}")]
    ClickHouse {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: clickhouse::error::Error,
    },
    /// The database carries a schema newer than this build.
    #[error("database {database} has schema version {found}, newer than the {known} this claudewatch knows: upgrade claudewatch (nothing was changed)")]
    TooNew {
        /// The database.
        database: String,
        /// Version found.
        found: u32,
        /// Latest version known.
        known: u32,
    },
    /// A database name that is not a plain identifier.
    #[error("database name {0:?}: use letters, digits and _ only")]
    BadName(String),
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Version before.
    pub from: u32,
    /// Version after.
    pub to: u32,
    /// Versions applied now.
    pub applied: Vec<u32>,
    /// Whether the table's TTL was changed.
    pub ttl_changed: bool,
}

/// The TTL clause for `ttl_days` (0: keep forever).
fn ttl_clause(ttl_days: u32) -> String {
    if ttl_days == 0 {
        String::new()
    } else {
        format!("TTL toDateTime(time_unix_nano) + toIntervalDay({ttl_days})")
    }
}

/// The statements of a migration for `database`, placeholders replaced and
/// comments dropped.
pub fn statements(m: &Migration, database: &str, ttl_days: u32) -> Vec<String> {
    let sql: String = m
        .sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("{{database}}", database)
        .replace("{{ttl}}", &ttl_clause(ttl_days));
    sql.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_name(database: &str) -> Result<(), SchemaError> {
    let ok = !database.is_empty()
        && database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !database.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(SchemaError::BadName(database.to_owned()))
    }
}

fn ch(what: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> SchemaError {
    let what = what.into();
    move |source| SchemaError::ClickHouse { what, source }
}

/// The schema version recorded in `database` (0 when none).
pub async fn current_version(client: &Client, database: &str) -> Result<u32, SchemaError> {
    check_name(database)?;
    let exists: u64 = client
        .query("SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'schema_migrations'")
        .param("db", database)
        .fetch_one()
        .await
        .map_err(ch("reading system.tables"))?;
    if exists == 0 {
        return Ok(0);
    }
    client
        .query(&format!(
            "SELECT toUInt32(max(version)) FROM {database}.schema_migrations"
        ))
        .fetch_one::<u32>()
        .await
        .map_err(ch("reading the schema version"))
}

/// Applies the missing migrations to `database` (created when missing) and
/// sets the TTL of `llm_calls` to `ttl_days` (0: none). `client` may point at
/// any database of the server.
pub async fn migrate(
    client: &Client,
    database: &str,
    ttl_days: u32,
) -> Result<MigrateReport, SchemaError> {
    check_name(database)?;
    let known = latest_version();
    let from = current_version(client, database).await?;
    if from > known {
        return Err(SchemaError::TooNew {
            database: database.to_owned(),
            found: from,
            known,
        });
    }
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .map_err(ch(format!("creating database {database}")))?;
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {database}.schema_migrations (
                version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
             ) ENGINE = MergeTree ORDER BY version"
        ))
        .execute()
        .await
        .map_err(ch("creating schema_migrations"))?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > from) {
        for statement in statements(m, database, ttl_days) {
            client
                .query(&statement)
                .execute()
                .await
                .map_err(ch(format!("migration {} ({})", m.version, m.name)))?;
        }
        client
            .query(&format!(
                "INSERT INTO {database}.schema_migrations (version, name) VALUES ({}, '{}')",
                m.version, m.name
            ))
            .execute()
            .await
            .map_err(ch(format!("recording migration {}", m.version)))?;
        tracing::info!(
            database,
            version = m.version,
            name = m.name,
            "schema migration applied"
        );
        applied.push(m.version);
    }
    let ttl_changed = set_ttl(client, database, ttl_days).await?;
    Ok(MigrateReport {
        from,
        to: known,
        applied,
        ttl_changed,
    })
}

/// Brings the TTL of `llm_calls` to `ttl_days`; true when it changed.
async fn set_ttl(client: &Client, database: &str, ttl_days: u32) -> Result<bool, SchemaError> {
    let engine: String = client
        .query("SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'llm_calls'")
        .param("db", database)
        .fetch_one()
        .await
        .map_err(ch("reading the TTL of llm_calls"))?;
    let wanted = ttl_clause(ttl_days);
    let has_ttl = engine.contains(" TTL ");
    let same = if ttl_days == 0 {
        !has_ttl
    } else {
        engine.contains(&wanted)
    };
    if same {
        return Ok(false);
    }
    let statement = if ttl_days == 0 {
        format!("ALTER TABLE {database}.llm_calls REMOVE TTL")
    } else {
        format!("ALTER TABLE {database}.llm_calls MODIFY {wanted}")
    };
    client
        .query(&statement)
        .execute()
        .await
        .map_err(ch("changing the TTL of llm_calls"))?;
    tracing::info!(database, ttl_days, "llm_calls TTL changed");
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statements_have_no_placeholders_left_and_are_idempotent() {
        for m in MIGRATIONS {
            for s in statements(m, "cw", 30) {
                assert!(!s.contains("{{"), "{s}");
                assert!(!s.contains('?'), "the crate reads ? as a bind: {s}");
                assert!(s.contains("IF NOT EXISTS"), "{s}");
            }
        }
        let all = statements(&MIGRATIONS[0], "cw", 30).join("\n");
        assert!(all.contains("TTL toDateTime(time_unix_nano) + toIntervalDay(30)"));
        assert!(!statements(&MIGRATIONS[0], "cw", 0)
            .join("\n")
            .contains("TTL"));
    }

    #[test]
    fn database_names_are_identifiers() {
        assert!(check_name("claudewatch_2").is_ok());
        for bad in ["", "a-b", "x; DROP", "1x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
