//! How the inserter sends the journal's rows: as they are, in
//! `RowBinaryWithNamesAndTypes` (the format the `clickhouse` crate sends with
//! validation on), after a header naming each column and its type.
//!
//! The journal already holds every row as RowBinary ([`row::encode`]), so
//! decoding it and serializing it again through the crate only to send the
//! same bytes cost the inserter most of its CPU. The crate's validation is
//! kept by doing once what it does per row: the table's columns are read from
//! `system.columns` (and read again after the table changed) and each type is
//! checked against the bytes [`row::encode`] writes. The header carries the
//! table's own types, as the crate's does, and ClickHouse checks it against
//! the table on every insert: a mismatch refuses the insert before any row is
//! stored (`INCORRECT_DATA` "while reading header"), a schema problem that is
//! retried, never a row problem that would send rows to the dead letters.
//!
//! [`row::encode`]: super::row::encode

use std::sync::Mutex;

use bytes::Bytes;
use clickhouse::{error::Error, Client};

use super::row::{put_str, put_varint, COLUMNS};

/// The `INSERT` statement for `table` (in the client's database).
pub fn insert_sql(table: &str) -> String {
    let columns: Vec<String> = COLUMNS.iter().map(|(name, _)| quoted(name)).collect();
    format!(
        "INSERT INTO {}({}) FORMAT RowBinaryWithNamesAndTypes",
        quoted(table),
        columns.join(",")
    )
}

fn quoted(identifier: &str) -> String {
    format!("`{}`", identifier.replace('\\', "\\\\").replace('`', "\\`"))
}

/// `t` without its `LowCardinality(...)` wrappers, which RowBinary does not
/// show (a `LowCardinality(String)` is written as a `String`).
pub fn without_low_cardinality(t: &str) -> String {
    const WRAPPER: &str = "LowCardinality(";
    let mut out = String::with_capacity(t.len());
    // Closing parentheses to drop: one per wrapper, at its nesting depth.
    let mut drop_at: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut rest = t;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with(WRAPPER) {
            depth += 1;
            drop_at.push(depth);
            rest = &rest[WRAPPER.len()..];
            continue;
        }
        match c {
            '(' => {
                depth += 1;
                out.push(c);
            }
            ')' => {
                if drop_at.last() == Some(&depth) {
                    drop_at.pop();
                } else {
                    out.push(c);
                }
                depth = depth.saturating_sub(1);
            }
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The header for a table whose columns are `table` (name, type), or why the
/// rows [`row::encode`](super::row::encode) writes do not fit it.
pub fn build(table: &[(String, String)]) -> Result<Bytes, String> {
    if table.is_empty() {
        return Err("no such table (`claudewatch migrate` creates it)".into());
    }
    let mut types = Vec::with_capacity(COLUMNS.len());
    for (name, written) in COLUMNS {
        let Some((_, theirs)) = table.iter().find(|(n, _)| n == name) else {
            return Err(format!("the table has no column `{name}`"));
        };
        if without_low_cardinality(theirs).replace(' ', "")
            != without_low_cardinality(written).replace(' ', "")
        {
            return Err(format!(
                "column `{name}` is {theirs}, claudewatch writes {written}"
            ));
        }
        types.push(theirs.as_str());
    }
    let mut out = Vec::new();
    put_varint(&mut out, COLUMNS.len() as u64);
    for (name, _) in COLUMNS {
        put_str(&mut out, name);
    }
    for t in types {
        put_str(&mut out, t);
    }
    Ok(Bytes::from(out))
}

/// Whether ClickHouse refused an insert because its header does not match
/// the table (the table changed since the header was built).
pub fn is_header_error(e: &Error) -> bool {
    matches!(e, Error::SchemaMismatch(_)) || e.to_string().contains("while reading header")
}

/// The header of one table, read when first needed and again after
/// [`TableHeader::forget`].
#[derive(Debug, Default)]
pub struct TableHeader {
    cached: Mutex<Option<Bytes>>,
}

/// A column of `system.columns`.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Column {
    name: String,
    r#type: String,
}

impl TableHeader {
    /// The header for `table` in `client`'s database; `SchemaMismatch` when
    /// the rows do not fit the table.
    pub async fn get(&self, client: &Client, table: &str) -> Result<Bytes, Error> {
        if let Some(h) = self.lock().clone() {
            return Ok(h);
        }
        let columns: Vec<Column> = client
            .query(
                "SELECT name, type FROM system.columns \
                 WHERE database = currentDatabase() AND table = ? ORDER BY position",
            )
            .bind(table)
            .fetch_all()
            .await?;
        let columns: Vec<(String, String)> =
            columns.into_iter().map(|c| (c.name, c.r#type)).collect();
        let header =
            build(&columns).map_err(|why| Error::SchemaMismatch(format!("{table}: {why}")))?;
        *self.lock() = Some(header.clone());
        Ok(header)
    }

    /// Reads the table's columns again before the next insert.
    pub fn forget(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Bytes>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn low_cardinality_wrappers_are_dropped_at_any_depth() {
        assert_eq!(without_low_cardinality("LowCardinality(String)"), "String");
        assert_eq!(
            without_low_cardinality("LowCardinality(Nullable(String))"),
            "Nullable(String)"
        );
        assert_eq!(
            without_low_cardinality("Map(LowCardinality(String), String)"),
            "Map(String, String)"
        );
        assert_eq!(
            without_low_cardinality("DateTime64(9, 'UTC')"),
            "DateTime64(9, 'UTC')"
        );
    }

    /// The table as migration 0001 creates it: (name, type) per column.
    fn migrated_columns() -> Vec<(String, String)> {
        let sql = include_str!("../../migrations/0001_llm_calls.sql");
        let body = sql
            .split("CREATE TABLE IF NOT EXISTS {{database}}.llm_calls\n(")
            .nth(1)
            .unwrap()
            .split("\n)\n")
            .next()
            .unwrap();
        body.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("INDEX") && !l.starts_with("CONSTRAINT"))
            .map(|l| {
                let l = l.trim_end_matches(',');
                let (name, rest) = l.split_once(char::is_whitespace).unwrap();
                let t = rest.split(" CODEC(").next().unwrap().trim();
                (name.to_owned(), t.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_rows_fit_the_migrated_table_and_the_header_names_its_types() {
        let table = migrated_columns();
        assert_eq!(table.len(), COLUMNS.len(), "{table:?}");
        for ((name, t), (written_name, written)) in table.iter().zip(COLUMNS) {
            assert_eq!(name, written_name);
            assert_eq!(t, written, "the type written for {name} is the migration's");
        }
        let header = build(&table).unwrap();
        assert_eq!(header[0] as usize, COLUMNS.len());
        let text = String::from_utf8_lossy(&header);
        assert!(
            text.contains("time_unix_nano") && text.contains("Map(LowCardinality(String), String)")
        );
    }

    #[test]
    fn a_table_that_differs_beyond_low_cardinality_is_refused() {
        let mut table = migrated_columns();
        // Dropping LowCardinality does not change the bytes: accepted, and
        // the header names the table's type.
        table[1].1 = "String".into();
        let header = build(&table).unwrap();
        assert!(String::from_utf8_lossy(&header).contains("\u{6}String"));
        // Nullable does: refused, naming the column.
        table[2].1 = "Nullable(String)".into();
        let why = build(&table).unwrap_err();
        assert!(why.contains("`service`"), "{why}");
        // A missing column: refused.
        table.remove(0);
        assert!(build(&table).unwrap_err().contains("time_unix_nano"));
        assert!(build(&[]).unwrap_err().contains("migrate"));
    }

    #[test]
    fn the_insert_names_every_column_in_the_rows_order() {
        let sql = insert_sql("llm_calls");
        assert!(sql.starts_with("INSERT INTO `llm_calls`(`time_unix_nano`,`tenant`,"));
        assert!(sql.ends_with("`attributes`) FORMAT RowBinaryWithNamesAndTypes"));
    }
}
