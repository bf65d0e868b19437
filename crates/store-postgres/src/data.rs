//! [`DataStore`] for PostgreSQL: entries and products as `JSONB` rows, each with its search lexemes in a `tsvector`
//! column under a GIN index.
//!
//! Filters are evaluated by [`DataFilter::matches`] on the rows of the collection in creation order, exactly as the
//! SQLite store does, so both answer a filter alike. Search follows the SQLite store's recipe step by step: the
//! candidates are the items holding a prefix of any query term, each term weighs [`term_weight`] by how many items of
//! the scope hold it as a prefix, and each candidate scores [`score`] from which terms it holds as a word and which
//! only as a prefix. Words are stemmed by PostgreSQL's Snowball English stemmer (SQLite's FTS5 uses Porter's, its
//! ancestor), a query term's prefix match is on its stem as in FTS5, and `ts_rank` stands in for BM25 when scores tie.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sundial_store::data::{
    entry_size, index_text, score, search_terms, term_weight, CollectionInfo, DataEntry, DataFilter, DataStore,
    EntryUpdate, Page, Product, ProductUpdate, Scored, SearchQuery, SearchTextChange, TermMatch, Updated,
};
use sundial_store::{Result, StoreError};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::{
    database, execute, get, get_json, jsonb, millis, opt_text, query, query_each, query_one, query_opt, time, Db,
    PostgresStore, Tx,
};

/// Search considers at most this many candidates (the best by `ts_rank`) before scoring them, as SQLite does.
const MAX_CANDIDATES: i64 = 10_000;

/// Words are indexed and looked up by at most their first this many bytes (PostgreSQL refuses lexemes of 2 KiB).
const MAX_WORD_BYTES: usize = 1024;

const ENTRY_COLUMNS: &str = "seq, agent_id, collection, id, data, search_text, created_at, updated_at";
const PRODUCT_COLUMNS: &str = "seq, agent_id, id, fields, created_at, updated_at";

fn entry_from_row(row: &Row) -> Result<(i64, DataEntry)> {
    Ok((
        get(row, 0)?,
        DataEntry {
            agent_id: get(row, 1)?,
            collection: get(row, 2)?,
            id: get(row, 3)?,
            data: get_json(row, 4)?,
            search_text: get(row, 5)?,
            created_at: time(get(row, 6)?),
            updated_at: time(get(row, 7)?),
        },
    ))
}

fn product_from_row(row: &Row) -> Result<(i64, Product)> {
    Ok((
        get(row, 0)?,
        Product {
            agent_id: get(row, 1)?,
            id: get(row, 2)?,
            fields: get_json(row, 3)?,
            created_at: time(get(row, 4)?),
            updated_at: time(get(row, 5)?),
        },
    ))
}

/// The words of an item's index text, each once: lowercase runs of letters and digits, split as
/// [`search_terms`] splits a query. The database stems them (`search_vector`).
fn index_words(text: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| clip(&word.to_lowercase()).to_owned())
        .filter(|word| seen.insert(word.clone()))
        .collect()
}

/// A word cut to its first [`MAX_WORD_BYTES`] bytes (at a character boundary).
fn clip(word: &str) -> &str {
    if word.len() <= MAX_WORD_BYTES {
        return word;
    }
    let mut end = MAX_WORD_BYTES;
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    &word[..end]
}

/// A lexeme as a `tsquery` operand: quoted, with `'` and `\` escaped.
fn quote_lexeme(lexeme: &str) -> String {
    let mut quoted = String::with_capacity(lexeme.len() + 2);
    quoted.push('\'');
    for c in lexeme.chars() {
        if c == '\'' || c == '\\' {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// A product as its filter sees it: the fields and the `id`.
fn product_document(product: &Product) -> sundial_core::JsonObject {
    let mut document = product.fields.clone();
    document.insert("id".into(), serde_json::Value::String(product.id.clone()));
    document
}

/// The items a search runs over: one collection of an agent, or an agent's products.
struct Scope<'a> {
    /// The table.
    table: &'static str,
    /// The condition that selects the scope, on `$1` (and `$2`).
    condition: &'static str,
    /// The values of the condition's parameters.
    params: Vec<&'a (dyn ToSql + Sync)>,
}

impl Scope<'_> {
    /// `params` followed by `more`, for a statement whose own parameters follow the scope's.
    fn with<'b>(&'b self, more: &[&'b (dyn ToSql + Sync)]) -> Vec<&'b (dyn ToSql + Sync)> {
        self.params.iter().copied().chain(more.iter().copied()).collect()
    }

    /// The placeholder of the statement's parameter `index` (0-based) after the scope's.
    fn placeholder(&self, index: usize) -> String {
        format!("${}", self.params.len() + index + 1)
    }
}

/// Ranks the items of `scope` for `search`: `(seq, score)`, best first, at most `search.limit`, each scoring at least
/// `search.threshold`. An item whose id equals the query text scores 1.
async fn rank(transaction: &Tx<'_>, scope: &Scope<'_>, search: &SearchQuery) -> Result<Vec<(i64, f64)>> {
    let terms = search_terms(&search.text);
    let terms: Vec<&str> = terms.iter().map(|term| clip(term)).collect();
    let exact_id = search.text.trim();
    let (table, condition) = (scope.table, scope.condition);
    let (p0, p1) = (scope.placeholder(0), scope.placeholder(1));
    let head = query_one(
        transaction,
        &format!(
            "SELECT (SELECT COUNT(*) FROM {table} WHERE {condition}), \
                    (SELECT seq FROM {table} WHERE {condition} AND id = {p0}), \
                    ARRAY(SELECT search_lexeme(term) FROM unnest({p1}::TEXT[]) WITH ORDINALITY AS t(term, position) \
                          ORDER BY position)"
        ),
        &scope.with(&[&exact_id, &terms]),
    )
    .await?;
    let total = get::<i64>(&head, 0)?.max(0) as u64;
    let exact: Option<i64> = get(&head, 1)?;
    let stems: Vec<String> = get(&head, 2)?;

    // (seq, score, rank: lower is better)
    let mut ranked: Vec<(i64, f64, f64)> = Vec::new();
    if !stems.is_empty() {
        let words: Vec<String> = stems
            .iter()
            .zip(&terms)
            .map(|(stem, term)| quote_lexeme(if stem.is_empty() { term } else { stem }))
            .collect();
        let prefixes: Vec<String> = words.iter().map(|word| format!("{word}:*")).collect();
        let any = prefixes.join(" | ");
        let counts = query(
            transaction,
            &format!(
                "SELECT (SELECT COUNT(*) FROM {table} WHERE {condition} AND lexemes @@ prefix::tsquery) \
                 FROM unnest({p0}::TEXT[]) WITH ORDINALITY AS t(prefix, position) ORDER BY position"
            ),
            &scope.with(&[&prefixes]),
        )
        .await?;
        let weights = counts
            .iter()
            .map(|row| Ok(term_weight(total, get::<i64>(row, 0)?.max(0) as u64)))
            .collect::<Result<Vec<f64>>>()?;
        let p2 = scope.placeholder(2);
        let candidates = query(
            transaction,
            &format!(
                "SELECT seq, ts_rank(lexemes, {p0}::TEXT::tsquery), \
                   ARRAY(SELECT CASE WHEN lexemes @@ word::tsquery THEN 2 WHEN lexemes @@ prefix::tsquery THEN 1 \
                                     ELSE 0 END \
                         FROM unnest({p1}::TEXT[], {p2}::TEXT[]) WITH ORDINALITY AS t(word, prefix, position) \
                         ORDER BY position) \
                 FROM {table} WHERE {condition} AND lexemes @@ {p0}::TEXT::tsquery \
                 ORDER BY 2 DESC, seq LIMIT {MAX_CANDIDATES}"
            ),
            &scope.with(&[&any, &words, &prefixes]),
        )
        .await?;
        for row in &candidates {
            let (seq, relevance, found): (i64, f32, Vec<i32>) = (get(row, 0)?, get(row, 1)?, get(row, 2)?);
            let matches: Vec<TermMatch> = found
                .iter()
                .map(|found| match found {
                    2 => TermMatch::Word,
                    1 => TermMatch::Prefix,
                    _ => TermMatch::Missing,
                })
                .collect();
            ranked.push((seq, score(&weights, &matches), -f64::from(relevance)));
        }
    }
    if let Some(seq) = exact {
        ranked.retain(|(candidate, _, _)| *candidate != seq);
        ranked.push((seq, 1.0, f64::NEG_INFINITY));
    }
    ranked.retain(|(_, score, _)| *score >= search.threshold);
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
    ranked.truncate(search.limit);
    Ok(ranked.into_iter().map(|(seq, score, _)| (seq, score)).collect())
}

/// Pages through rows in `seq` order, keeping those `keep` accepts: the page from `offset` and the count of all
/// kept. The rows are streamed, not loaded at once.
async fn filtered_page<T>(
    transaction: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    decode: impl Fn(&Row) -> Result<(i64, T)>,
    keep: impl Fn(&T) -> bool,
    offset: u64,
    limit: usize,
) -> Result<Page<T>> {
    let mut items = Vec::new();
    let mut total = 0u64;
    query_each(transaction, sql, params, |row| {
        let (_, item) = decode(&row)?;
        if keep(&item) {
            if total >= offset && items.len() < limit {
                items.push(item);
            }
            total += 1;
        }
        Ok(())
    })
    .await?;
    Ok(Page { items, total })
}

fn page_bounds(offset: u64, limit: usize) -> (i64, i64) {
    (offset.min(i64::MAX as u64) as i64, limit.min(i64::MAX as usize) as i64)
}

/// Loads the ranked items of a search in rank order, with their scores.
async fn load_ranked<T>(
    client: &impl Db,
    sql: &str,
    scope: &Scope<'_>,
    ranked: Vec<(i64, f64)>,
    decode: impl Fn(&Row) -> Result<(i64, T)>,
) -> Result<Vec<Scored<T>>> {
    if ranked.is_empty() {
        return Ok(Vec::new());
    }
    let seqs: Vec<i64> = ranked.iter().map(|(seq, _)| *seq).collect();
    let rows = query(client, sql, &scope.with(&[&seqs])).await?;
    let mut found: HashMap<i64, T> = rows.iter().map(&decode).collect::<Result<_>>()?;
    Ok(ranked.into_iter().filter_map(|(seq, score)| Some(Scored { item: found.remove(&seq)?, score })).collect())
}

#[async_trait]
impl DataStore for PostgresStore {
    async fn data_entry_insert(&self, entry: &DataEntry) -> Result<()> {
        let client = self.client().await?;
        let words = index_words(&index_text(&entry.data, entry.search_text.as_deref()));
        let inserted = execute(
            &client,
            "INSERT INTO data_entries (agent_id, collection, id, data, search_text, created_at, updated_at, lexemes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, search_vector($8)) ON CONFLICT DO NOTHING",
            &[
                &entry.agent_id,
                &entry.collection,
                &entry.id,
                &jsonb(&entry.data),
                &opt_text(entry.search_text.as_deref()),
                &millis(entry.created_at),
                &millis(entry.updated_at),
                &words,
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("entry {} of collection {}", entry.id, entry.collection)));
        }
        Ok(())
    }

    async fn data_entry_get(&self, agent_id: &str, collection: &str, id: &str) -> Result<Option<DataEntry>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            &format!("SELECT {ENTRY_COLUMNS} FROM data_entries WHERE agent_id = $1 AND collection = $2 AND id = $3"),
            &[&agent_id, &collection, &id],
        )
        .await?;
        Ok(row.map(|row| entry_from_row(&row)).transpose()?.map(|(_, entry)| entry))
    }

    async fn data_entry_list(
        &self,
        agent_id: &str,
        collection: &str,
        filter: Option<&DataFilter>,
        offset: u64,
        limit: usize,
    ) -> Result<Page<DataEntry>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_read(&mut client).await?;
        let columns = format!("SELECT {ENTRY_COLUMNS} FROM data_entries WHERE agent_id = $1 AND collection = $2");
        let page = if let Some(filter) = filter {
            filtered_page(
                &transaction,
                &format!("{columns} ORDER BY seq"),
                &[&agent_id, &collection],
                entry_from_row,
                |entry: &DataEntry| filter.matches(&entry.data),
                offset,
                limit,
            )
            .await?
        } else {
            let total: i64 = get(
                &query_one(
                    &transaction,
                    "SELECT COUNT(*) FROM data_entries WHERE agent_id = $1 AND collection = $2",
                    &[&agent_id, &collection],
                )
                .await?,
                0,
            )?;
            let (offset, limit) = page_bounds(offset, limit);
            let rows = query(
                &transaction,
                &format!("{columns} ORDER BY seq LIMIT $3 OFFSET $4"),
                &[&agent_id, &collection, &limit, &offset],
            )
            .await?;
            let items = rows.iter().map(|row| entry_from_row(row).map(|(_, entry)| entry)).collect::<Result<_>>()?;
            Page { items, total: total.max(0) as u64 }
        };
        transaction.commit().await.map_err(database)?;
        Ok(page)
    }

    async fn data_entry_update(
        &self,
        agent_id: &str,
        collection: &str,
        id: &str,
        update: &EntryUpdate,
    ) -> Result<Updated<DataEntry>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        // The row stays locked until the update commits, so concurrent merges apply one after the other.
        let row = query_opt(
            &transaction,
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM data_entries WHERE agent_id = $1 AND collection = $2 AND id = $3 \
                 FOR UPDATE"
            ),
            &[&agent_id, &collection, &id],
        )
        .await?;
        let Some(row) = row else { return Ok(Updated::NotFound) };
        let (seq, mut entry) = entry_from_row(&row)?;
        update.data.apply(&mut entry.data);
        match &update.search_text {
            SearchTextChange::Keep => {}
            SearchTextChange::Set(text) => entry.search_text = Some(text.clone()),
            SearchTextChange::Clear => entry.search_text = None,
        }
        let size = entry_size(&entry.data, entry.search_text.as_deref());
        if size > update.max_bytes {
            return Ok(Updated::TooLarge(size));
        }
        entry.updated_at = update.updated_at;
        let words = index_words(&index_text(&entry.data, entry.search_text.as_deref()));
        execute(
            &transaction,
            "UPDATE data_entries SET data = $2, search_text = $3, updated_at = $4, lexemes = search_vector($5) \
             WHERE seq = $1",
            &[&seq, &jsonb(&entry.data), &opt_text(entry.search_text.as_deref()), &millis(entry.updated_at), &words],
        )
        .await?;
        transaction.commit().await.map_err(database)?;
        Ok(Updated::Done(entry))
    }

    async fn data_entry_delete(&self, agent_id: &str, collection: &str, id: &str) -> Result<bool> {
        let client = self.client().await?;
        let deleted = execute(
            &client,
            "DELETE FROM data_entries WHERE agent_id = $1 AND collection = $2 AND id = $3",
            &[&agent_id, &collection, &id],
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn data_entry_search(
        &self,
        agent_id: &str,
        collection: &str,
        query: &SearchQuery,
    ) -> Result<Vec<Scored<DataEntry>>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_read(&mut client).await?;
        let scope = Scope {
            table: "data_entries",
            condition: "agent_id = $1 AND collection = $2",
            params: vec![&agent_id, &collection],
        };
        let ranked = rank(&transaction, &scope, query).await?;
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM data_entries WHERE agent_id = $1 AND collection = $2 AND seq = ANY($3)"
        );
        let hits = load_ranked(&transaction, &sql, &scope, ranked, entry_from_row).await?;
        transaction.commit().await.map_err(database)?;
        Ok(hits)
    }

    async fn data_collections(&self, agent_id: &str) -> Result<Vec<CollectionInfo>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT collection, COUNT(*), MIN(created_at), MAX(updated_at) FROM data_entries \
             WHERE agent_id = $1 GROUP BY collection ORDER BY collection",
            &[&agent_id],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CollectionInfo {
                    name: get(row, 0)?,
                    entry_count: get::<i64>(row, 1)?.max(0) as u64,
                    first_created_at: time(get(row, 2)?),
                    last_updated_at: time(get(row, 3)?),
                })
            })
            .collect()
    }

    async fn product_insert(&self, product: &Product) -> Result<()> {
        let client = self.client().await?;
        let words = index_words(&index_text(&product.fields, None));
        let inserted = execute(
            &client,
            "INSERT INTO products (agent_id, id, fields, created_at, updated_at, lexemes) \
             VALUES ($1, $2, $3, $4, $5, search_vector($6)) ON CONFLICT DO NOTHING",
            &[
                &product.agent_id,
                &product.id,
                &jsonb(&product.fields),
                &millis(product.created_at),
                &millis(product.updated_at),
                &words,
            ],
        )
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("product {}", product.id)));
        }
        Ok(())
    }

    async fn product_get(&self, agent_id: &str, id: &str) -> Result<Option<Product>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE agent_id = $1 AND id = $2"),
            &[&agent_id, &id],
        )
        .await?;
        Ok(row.map(|row| product_from_row(&row)).transpose()?.map(|(_, product)| product))
    }

    async fn product_list(
        &self,
        agent_id: &str,
        filter: Option<&DataFilter>,
        offset: u64,
        limit: usize,
    ) -> Result<Page<Product>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_read(&mut client).await?;
        let columns = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE agent_id = $1");
        let page = if let Some(filter) = filter {
            filtered_page(
                &transaction,
                &format!("{columns} ORDER BY seq"),
                &[&agent_id],
                product_from_row,
                |product: &Product| filter.matches(&product_document(product)),
                offset,
                limit,
            )
            .await?
        } else {
            let total: i64 = get(
                &query_one(&transaction, "SELECT COUNT(*) FROM products WHERE agent_id = $1", &[&agent_id]).await?,
                0,
            )?;
            let (offset, limit) = page_bounds(offset, limit);
            let rows = query(
                &transaction,
                &format!("{columns} ORDER BY seq LIMIT $2 OFFSET $3"),
                &[&agent_id, &limit, &offset],
            )
            .await?;
            let items =
                rows.iter().map(|row| product_from_row(row).map(|(_, product)| product)).collect::<Result<_>>()?;
            Page { items, total: total.max(0) as u64 }
        };
        transaction.commit().await.map_err(database)?;
        Ok(page)
    }

    async fn product_update(&self, agent_id: &str, id: &str, update: &ProductUpdate) -> Result<Updated<Product>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        let row = query_opt(
            &transaction,
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE agent_id = $1 AND id = $2 FOR UPDATE"),
            &[&agent_id, &id],
        )
        .await?;
        let Some(row) = row else { return Ok(Updated::NotFound) };
        let (seq, mut product) = product_from_row(&row)?;
        update.fields.apply(&mut product.fields);
        product.fields.remove("id");
        let size = entry_size(&product.fields, None);
        if size > update.max_bytes {
            return Ok(Updated::TooLarge(size));
        }
        product.updated_at = update.updated_at;
        let words = index_words(&index_text(&product.fields, None));
        execute(
            &transaction,
            "UPDATE products SET fields = $2, updated_at = $3, lexemes = search_vector($4) WHERE seq = $1",
            &[&seq, &jsonb(&product.fields), &millis(product.updated_at), &words],
        )
        .await?;
        transaction.commit().await.map_err(database)?;
        Ok(Updated::Done(product))
    }

    async fn product_delete(&self, agent_id: &str, id: &str) -> Result<bool> {
        let client = self.client().await?;
        let deleted =
            execute(&client, "DELETE FROM products WHERE agent_id = $1 AND id = $2", &[&agent_id, &id]).await?;
        Ok(deleted > 0)
    }

    async fn product_search(&self, agent_id: &str, query: &SearchQuery) -> Result<Vec<Scored<Product>>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_read(&mut client).await?;
        let scope = Scope { table: "products", condition: "agent_id = $1", params: vec![&agent_id] };
        let ranked = rank(&transaction, &scope, query).await?;
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE agent_id = $1 AND seq = ANY($2)");
        let hits = load_ranked(&transaction, &sql, &scope, ranked, product_from_row).await?;
        transaction.commit().await.map_err(database)?;
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_words_are_lowercase_runs_once() {
        assert_eq!(
            super::index_words("T-1001\nPrinter does not print\nprinter"),
            ["t", "1001", "printer", "does", "not", "print"]
        );
        assert!(super::index_words(" -- ").is_empty());
    }

    #[test]
    fn lexemes_are_quoted_for_tsquery() {
        assert_eq!(super::quote_lexeme("print"), "'print'");
        assert_eq!(super::quote_lexeme("it's\\"), "'it''s\\\\'");
    }
}
