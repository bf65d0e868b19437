//! The SQLite side of [`crate::data::DataStore`]: entries and products as JSON text in plain tables, each mirrored
//! in an FTS5 table (`porter unicode61` tokenizer) for ranked search.
//!
//! An FTS row carries a `scope` token — a hash of the agent (and collection) — next to the indexed `body`, so a search
//! reads only the index of its own collection; rows are still checked against their agent and collection when they
//! are loaded, so a hash collision can never leak an item. The FTS rowid is the item's `seq`.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row, Transaction};
use sundial_core::JsonObject;

use crate::data::{
    entry_size, index_text, score, search_terms, term_weight, CollectionInfo, DataEntry, DataFilter, DataStore,
    EntryUpdate, Page, Product, ProductUpdate, Scored, SearchQuery, SearchTextChange, TermMatch, Updated,
};
use crate::sqlite::SqliteStore;
use crate::{Result, StoreError};

/// Schema of `Data` collections and `Products` (applied as one migration of the SQLite store).
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE data_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    search_text TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (agent_id, collection, id)
);
CREATE INDEX data_entries_by_collection ON data_entries (agent_id, collection, seq);
CREATE VIRTUAL TABLE data_entries_fts USING fts5(scope, body, tokenize = 'porter unicode61');
CREATE TABLE products (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    id TEXT NOT NULL,
    fields TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (agent_id, id)
);
CREATE VIRTUAL TABLE products_fts USING fts5(scope, body, tokenize = 'porter unicode61');
"#;

/// Search considers at most this many candidates (the best by BM25) before scoring them.
const MAX_CANDIDATES: usize = 10_000;

const ENTRY_COLUMNS: &str = "seq, agent_id, collection, id, data, search_text, created_at, updated_at";
const PRODUCT_COLUMNS: &str = "seq, agent_id, id, fields, created_at, updated_at";

fn database(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

fn millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn to_json(object: &JsonObject) -> String {
    serde_json::to_string(object).unwrap_or_else(|_| "{}".into())
}

fn object_from(text: &str) -> rusqlite::Result<JsonObject> {
    serde_json::from_str(text)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error)))
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, DataEntry)> {
    Ok((
        row.get(0)?,
        DataEntry {
            agent_id: row.get(1)?,
            collection: row.get(2)?,
            id: row.get(3)?,
            data: object_from(&row.get::<_, String>(4)?)?,
            search_text: row.get(5)?,
            created_at: time(row.get(6)?),
            updated_at: time(row.get(7)?),
        },
    ))
}

fn product_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, Product)> {
    Ok((
        row.get(0)?,
        Product {
            agent_id: row.get(1)?,
            id: row.get(2)?,
            fields: object_from(&row.get::<_, String>(3)?)?,
            created_at: time(row.get(4)?),
            updated_at: time(row.get(5)?),
        },
    ))
}

/// FNV-1a over the parts, as a decimal token (digits only, so no stemmer changes it).
fn scope(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hash = (hash ^ 0xff).wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash.to_string()
}

fn phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Writes (or rewrites) the FTS row of an item.
fn index(transaction: &Transaction<'_>, table: &str, seq: i64, scope: &str, body: &str) -> Result<()> {
    transaction
        .prepare_cached(&format!("DELETE FROM {table} WHERE rowid = ?1"))
        .and_then(|mut statement| statement.execute([seq]))
        .map_err(database)?;
    transaction
        .prepare_cached(&format!("INSERT INTO {table} (rowid, scope, body) VALUES (?1, ?2, ?3)"))
        .and_then(|mut statement| statement.execute(params![seq, scope, body]))
        .map_err(database)?;
    Ok(())
}

fn unindex(transaction: &Transaction<'_>, table: &str, seq: i64) -> Result<()> {
    transaction
        .prepare_cached(&format!("DELETE FROM {table} WHERE rowid = ?1"))
        .and_then(|mut statement| statement.execute([seq]))
        .map_err(database)?;
    Ok(())
}

fn fts_rowids(transaction: &Transaction<'_>, table: &str, expression: &str) -> Result<HashSet<i64>> {
    let mut statement =
        transaction.prepare_cached(&format!("SELECT rowid FROM {table} WHERE {table} MATCH ?1")).map_err(database)?;
    let rows = statement.query_map([expression], |row| row.get::<_, i64>(0)).map_err(database)?;
    rows.collect::<rusqlite::Result<HashSet<_>>>().map_err(database)
}

/// Ranks the items of one scope for `query`: `(seq, score)`, best first, at most `query.limit`, each scoring at least
/// `query.threshold`. `total` is the number of items in the scope; `exact` is the seq of the item whose id equals the
/// query text, which scores 1.
fn rank(
    transaction: &Transaction<'_>,
    table: &str,
    scope: &str,
    total: u64,
    query: &SearchQuery,
    exact: Option<i64>,
) -> Result<Vec<(i64, f64)>> {
    let terms = search_terms(&query.text);
    // (seq, score, bm25 rank: lower is better)
    let mut ranked: Vec<(i64, f64, f64)> = Vec::new();
    if !terms.is_empty() {
        let scope_filter = format!("scope : {}", phrase(scope));
        let any = terms.iter().map(|term| format!("{}*", phrase(term))).collect::<Vec<_>>().join(" OR ");
        let mut statement = transaction
            .prepare_cached(&format!(
                "SELECT rowid, bm25({table}, 0.0, 1.0) FROM {table} WHERE {table} MATCH ?1 ORDER BY rank LIMIT ?2"
            ))
            .map_err(database)?;
        let rows = statement
            .query_map(params![format!("{scope_filter} AND body : ({any})"), MAX_CANDIDATES as i64], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, f64>(1)?))
            })
            .map_err(database)?;
        let candidates = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)?;
        let mut weights = Vec::with_capacity(terms.len());
        let mut words = Vec::with_capacity(terms.len());
        let mut prefixes = Vec::with_capacity(terms.len());
        for term in &terms {
            let word = fts_rowids(transaction, table, &format!("{scope_filter} AND body : {}", phrase(term)))?;
            let prefix = fts_rowids(transaction, table, &format!("{scope_filter} AND body : {}*", phrase(term)))?;
            weights.push(term_weight(total, prefix.len() as u64));
            words.push(word);
            prefixes.push(prefix);
        }
        let mut matches = vec![TermMatch::Missing; terms.len()];
        for (seq, bm25) in candidates {
            for (index, found) in matches.iter_mut().enumerate() {
                *found = if words[index].contains(&seq) {
                    TermMatch::Word
                } else if prefixes[index].contains(&seq) {
                    TermMatch::Prefix
                } else {
                    TermMatch::Missing
                };
            }
            ranked.push((seq, score(&weights, &matches), bm25));
        }
    }
    if let Some(seq) = exact {
        ranked.retain(|(candidate, _, _)| *candidate != seq);
        ranked.push((seq, 1.0, f64::NEG_INFINITY));
    }
    ranked.retain(|(_, score, _)| *score >= query.threshold);
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
    ranked.truncate(query.limit);
    Ok(ranked.into_iter().map(|(seq, score, _)| (seq, score)).collect())
}

fn get_entry(
    transaction: &Transaction<'_>,
    agent_id: &str,
    collection: &str,
    id: &str,
) -> Result<Option<(i64, DataEntry)>> {
    transaction
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM data_entries WHERE agent_id = ?1 AND collection = ?2 AND id = ?3"
        ))
        .and_then(|mut statement| statement.query_row(params![agent_id, collection, id], entry_from_row).optional())
        .map_err(database)
}

fn get_product(transaction: &Transaction<'_>, agent_id: &str, id: &str) -> Result<Option<(i64, Product)>> {
    transaction
        .prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE agent_id = ?1 AND id = ?2"))
        .and_then(|mut statement| statement.query_row(params![agent_id, id], product_from_row).optional())
        .map_err(database)
}

/// A product as its filter and index see it: the fields and the `id`.
fn product_document(product: &Product) -> JsonObject {
    let mut document = product.fields.clone();
    document.insert("id".into(), serde_json::Value::String(product.id.clone()));
    document
}

/// Pages through rows in `seq` order, keeping those `keep` accepts: the page from `offset` and the count of all kept.
fn filtered_page<T>(
    rows: impl Iterator<Item = rusqlite::Result<(i64, T)>>,
    keep: impl Fn(&T) -> bool,
    offset: u64,
    limit: usize,
) -> Result<Page<T>> {
    let mut items = Vec::new();
    let mut total = 0u64;
    for row in rows {
        let (_, item) = row.map_err(database)?;
        if !keep(&item) {
            continue;
        }
        if total >= offset && items.len() < limit {
            items.push(item);
        }
        total += 1;
    }
    Ok(Page { items, total })
}

#[async_trait]
impl DataStore for SqliteStore {
    async fn data_entry_insert(&self, entry: &DataEntry) -> Result<()> {
        let entry = entry.clone();
        self.write(move |transaction| {
            let inserted = transaction
                .prepare_cached(
                    "INSERT INTO data_entries (agent_id, collection, id, data, search_text, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        entry.agent_id,
                        entry.collection,
                        entry.id,
                        to_json(&entry.data),
                        entry.search_text,
                        millis(entry.created_at),
                        millis(entry.updated_at),
                    ])
                })
                .map_err(database)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("entry {} of collection {}", entry.id, entry.collection)));
            }
            let seq = transaction.last_insert_rowid();
            let body = index_text(&entry.data, entry.search_text.as_deref());
            index(transaction, "data_entries_fts", seq, &scope(&[&entry.agent_id, &entry.collection]), &body)
        })
        .await
    }

    async fn data_entry_get(&self, agent_id: &str, collection: &str, id: &str) -> Result<Option<DataEntry>> {
        let (agent_id, collection, id) = (agent_id.to_owned(), collection.to_owned(), id.to_owned());
        self.write(move |transaction| Ok(get_entry(transaction, &agent_id, &collection, &id)?.map(|(_, entry)| entry)))
            .await
    }

    async fn data_entry_list(
        &self,
        agent_id: &str,
        collection: &str,
        filter: Option<&DataFilter>,
        offset: u64,
        limit: usize,
    ) -> Result<Page<DataEntry>> {
        let (agent_id, collection, filter) = (agent_id.to_owned(), collection.to_owned(), filter.cloned());
        self.write(move |transaction| {
            let columns = format!("SELECT {ENTRY_COLUMNS} FROM data_entries WHERE agent_id = ?1 AND collection = ?2");
            if let Some(filter) = filter {
                let mut statement = transaction.prepare_cached(&format!("{columns} ORDER BY seq")).map_err(database)?;
                let rows = statement.query_map(params![agent_id, collection], entry_from_row).map_err(database)?;
                return filtered_page(rows, |entry: &DataEntry| filter.matches(&entry.data), offset, limit);
            }
            let total: i64 = transaction
                .prepare_cached("SELECT count(*) FROM data_entries WHERE agent_id = ?1 AND collection = ?2")
                .and_then(|mut statement| statement.query_row(params![agent_id, collection], |row| row.get(0)))
                .map_err(database)?;
            let mut statement =
                transaction.prepare_cached(&format!("{columns} ORDER BY seq LIMIT ?3 OFFSET ?4")).map_err(database)?;
            let rows = statement
                .query_map(
                    params![agent_id, collection, limit as i64, offset.min(i64::MAX as u64) as i64],
                    entry_from_row,
                )
                .map_err(database)?;
            let items = rows.map(|row| row.map(|(_, entry)| entry)).collect::<rusqlite::Result<Vec<_>>>();
            Ok(Page { items: items.map_err(database)?, total: total as u64 })
        })
        .await
    }

    async fn data_entry_update(
        &self,
        agent_id: &str,
        collection: &str,
        id: &str,
        update: &EntryUpdate,
    ) -> Result<Updated<DataEntry>> {
        let (agent_id, collection, id, update) =
            (agent_id.to_owned(), collection.to_owned(), id.to_owned(), update.clone());
        self.write(move |transaction| {
            let Some((seq, mut entry)) = get_entry(transaction, &agent_id, &collection, &id)? else {
                return Ok(Updated::NotFound);
            };
            update.data.apply(&mut entry.data);
            match update.search_text {
                SearchTextChange::Keep => {}
                SearchTextChange::Set(text) => entry.search_text = Some(text),
                SearchTextChange::Clear => entry.search_text = None,
            }
            let size = entry_size(&entry.data, entry.search_text.as_deref());
            if size > update.max_bytes {
                return Ok(Updated::TooLarge(size));
            }
            entry.updated_at = update.updated_at;
            transaction
                .prepare_cached("UPDATE data_entries SET data = ?2, search_text = ?3, updated_at = ?4 WHERE seq = ?1")
                .and_then(|mut statement| {
                    statement.execute(params![seq, to_json(&entry.data), entry.search_text, millis(entry.updated_at)])
                })
                .map_err(database)?;
            let body = index_text(&entry.data, entry.search_text.as_deref());
            index(transaction, "data_entries_fts", seq, &scope(&[&agent_id, &collection]), &body)?;
            Ok(Updated::Done(entry))
        })
        .await
    }

    async fn data_entry_delete(&self, agent_id: &str, collection: &str, id: &str) -> Result<bool> {
        let (agent_id, collection, id) = (agent_id.to_owned(), collection.to_owned(), id.to_owned());
        self.write(move |transaction| {
            let Some((seq, _)) = get_entry(transaction, &agent_id, &collection, &id)? else {
                return Ok(false);
            };
            transaction.execute("DELETE FROM data_entries WHERE seq = ?1", [seq]).map_err(database)?;
            unindex(transaction, "data_entries_fts", seq)?;
            Ok(true)
        })
        .await
    }

    async fn data_entry_search(
        &self,
        agent_id: &str,
        collection: &str,
        query: &SearchQuery,
    ) -> Result<Vec<Scored<DataEntry>>> {
        let (agent_id, collection, query) = (agent_id.to_owned(), collection.to_owned(), query.clone());
        self.write(move |transaction| {
            let total: i64 = transaction
                .prepare_cached("SELECT count(*) FROM data_entries WHERE agent_id = ?1 AND collection = ?2")
                .and_then(|mut statement| statement.query_row(params![agent_id, collection], |row| row.get(0)))
                .map_err(database)?;
            let exact = get_entry(transaction, &agent_id, &collection, query.text.trim())?.map(|(seq, _)| seq);
            let scope = scope(&[&agent_id, &collection]);
            let ranked = rank(transaction, "data_entries_fts", &scope, total as u64, &query, exact)?;
            let mut statement = transaction
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM data_entries WHERE seq = ?1 AND agent_id = ?2 AND collection = ?3"
                ))
                .map_err(database)?;
            let mut hits = Vec::with_capacity(ranked.len());
            for (seq, score) in ranked {
                let found = statement
                    .query_row(params![seq, agent_id, collection], entry_from_row)
                    .optional()
                    .map_err(database)?;
                if let Some((_, entry)) = found {
                    hits.push(Scored { item: entry, score });
                }
            }
            Ok(hits)
        })
        .await
    }

    async fn data_collections(&self, agent_id: &str) -> Result<Vec<CollectionInfo>> {
        let agent_id = agent_id.to_owned();
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached(
                    "SELECT collection, count(*), min(created_at), max(updated_at) FROM data_entries \
                     WHERE agent_id = ?1 GROUP BY collection ORDER BY collection",
                )
                .map_err(database)?;
            let rows = statement
                .query_map([agent_id], |row| {
                    Ok(CollectionInfo {
                        name: row.get(0)?,
                        entry_count: row.get::<_, i64>(1)? as u64,
                        first_created_at: time(row.get(2)?),
                        last_updated_at: time(row.get(3)?),
                    })
                })
                .map_err(database)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(database)
        })
        .await
    }

    async fn product_insert(&self, product: &Product) -> Result<()> {
        let product = product.clone();
        self.write(move |transaction| {
            let inserted = transaction
                .prepare_cached(
                    "INSERT INTO products (agent_id, id, fields, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT DO NOTHING",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        product.agent_id,
                        product.id,
                        to_json(&product.fields),
                        millis(product.created_at),
                        millis(product.updated_at),
                    ])
                })
                .map_err(database)?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("product {}", product.id)));
            }
            let seq = transaction.last_insert_rowid();
            index(transaction, "products_fts", seq, &scope(&[&product.agent_id]), &index_text(&product.fields, None))
        })
        .await
    }

    async fn product_get(&self, agent_id: &str, id: &str) -> Result<Option<Product>> {
        let (agent_id, id) = (agent_id.to_owned(), id.to_owned());
        self.write(move |transaction| Ok(get_product(transaction, &agent_id, &id)?.map(|(_, product)| product))).await
    }

    async fn product_list(
        &self,
        agent_id: &str,
        filter: Option<&DataFilter>,
        offset: u64,
        limit: usize,
    ) -> Result<Page<Product>> {
        let (agent_id, filter) = (agent_id.to_owned(), filter.cloned());
        self.write(move |transaction| {
            let mut statement = transaction
                .prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE agent_id = ?1 ORDER BY seq"))
                .map_err(database)?;
            let rows = statement.query_map([agent_id], product_from_row).map_err(database)?;
            let keep =
                |product: &Product| filter.as_ref().is_none_or(|filter| filter.matches(&product_document(product)));
            filtered_page(rows, keep, offset, limit)
        })
        .await
    }

    async fn product_update(&self, agent_id: &str, id: &str, update: &ProductUpdate) -> Result<Updated<Product>> {
        let (agent_id, id, update) = (agent_id.to_owned(), id.to_owned(), update.clone());
        self.write(move |transaction| {
            let Some((seq, mut product)) = get_product(transaction, &agent_id, &id)? else {
                return Ok(Updated::NotFound);
            };
            update.fields.apply(&mut product.fields);
            product.fields.remove("id");
            let size = entry_size(&product.fields, None);
            if size > update.max_bytes {
                return Ok(Updated::TooLarge(size));
            }
            product.updated_at = update.updated_at;
            transaction
                .prepare_cached("UPDATE products SET fields = ?2, updated_at = ?3 WHERE seq = ?1")
                .and_then(|mut statement| {
                    statement.execute(params![seq, to_json(&product.fields), millis(product.updated_at)])
                })
                .map_err(database)?;
            index(transaction, "products_fts", seq, &scope(&[&agent_id]), &index_text(&product.fields, None))?;
            Ok(Updated::Done(product))
        })
        .await
    }

    async fn product_delete(&self, agent_id: &str, id: &str) -> Result<bool> {
        let (agent_id, id) = (agent_id.to_owned(), id.to_owned());
        self.write(move |transaction| {
            let Some((seq, _)) = get_product(transaction, &agent_id, &id)? else {
                return Ok(false);
            };
            transaction.execute("DELETE FROM products WHERE seq = ?1", [seq]).map_err(database)?;
            unindex(transaction, "products_fts", seq)?;
            Ok(true)
        })
        .await
    }

    async fn product_search(&self, agent_id: &str, query: &SearchQuery) -> Result<Vec<Scored<Product>>> {
        let (agent_id, query) = (agent_id.to_owned(), query.clone());
        self.write(move |transaction| {
            let total: i64 = transaction
                .prepare_cached("SELECT count(*) FROM products WHERE agent_id = ?1")
                .and_then(|mut statement| statement.query_row([&agent_id], |row| row.get(0)))
                .map_err(database)?;
            let exact = get_product(transaction, &agent_id, query.text.trim())?.map(|(seq, _)| seq);
            let ranked = rank(transaction, "products_fts", &scope(&[&agent_id]), total as u64, &query, exact)?;
            let mut statement = transaction
                .prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE seq = ?1 AND agent_id = ?2"))
                .map_err(database)?;
            let mut hits = Vec::with_capacity(ranked.len());
            for (seq, score) in ranked {
                let found =
                    statement.query_row(params![seq, agent_id], product_from_row).optional().map_err(database)?;
                if let Some((_, product)) = found {
                    hits.push(Scored { item: product, score });
                }
            }
            Ok(hits)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::data::conformance::{run, CHECKS};
    use crate::SqliteStore;

    #[tokio::test]
    async fn sqlite_passes_the_data_conformance_suite() {
        for check in CHECKS {
            let directory = tempfile::tempdir().expect("temporary directory");
            let store = SqliteStore::open(&directory.path().join("sundial.db")).expect("open store");
            run(check, &store).await;
        }
    }

    #[test]
    fn the_bundled_sqlite_has_fts5() {
        let connection = rusqlite::Connection::open_in_memory().expect("open");
        let enabled: bool = connection
            .query_row("SELECT sqlite_compileoption_used('ENABLE_FTS5')", [], |row| row.get(0))
            .expect("compile option");
        assert!(enabled, "rusqlite's bundled SQLite lacks FTS5");
    }

    #[test]
    fn scopes_differ_per_agent_and_collection() {
        let scope = super::scope;
        assert_ne!(scope(&["a", "bc"]), scope(&["ab", "c"]));
        assert_ne!(scope(&["a", "tickets"]), scope(&["b", "tickets"]));
        assert!(scope(&["a"]).chars().all(|c| c.is_ascii_digit()));
    }
}
