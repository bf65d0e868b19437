//! The agent's platform data as job code and tools see it: `Data` collections and `Products`.
//!
//! A **data entry** is a JSON object in a named collection of an agent, with an optional `searchText` that full-text
//! search indexes instead of the entry's own string and number values. A **product** is a free JSON object of an
//! agent's catalog with an `id`. Both are listed in creation order, filtered with a bounded Mongo-style query
//! ([`DataFilter`], lua-cli's `LuaQuery`) and searched with [`SearchQuery`]: ranked full-text search whose score in
//! `[0, 1]` is the share of the query's weight an item contains (see [`score`]).
//!
//! What is shared by every implementation lives here as plain functions — filter evaluation, the text that search
//! indexes, the query's terms and the score — so two stores answer the same search the same way. [`conformance`]
//! holds the checks every [`DataStore`] must pass.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sundial_core::JsonObject;

use crate::Result;

/// The largest entry or product, as compact JSON (data plus `searchText`).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// The most terms of a search query that are looked up; further terms are ignored.
pub const MAX_SEARCH_TERMS: usize = 32;

/// The weight of a query term that an item contains only as the prefix of a longer word (`tick` in `tickets`),
/// relative to a whole word.
pub const PREFIX_MATCH_WEIGHT: f64 = 0.7;

/// One entry of a data collection.
#[derive(Clone, Debug, PartialEq)]
pub struct DataEntry {
    /// The agent.
    pub agent_id: String,
    /// The collection (1–64 characters of `[A-Za-z0-9_-]`).
    pub collection: String,
    /// `ent_…`
    pub id: String,
    /// The entry's data: a JSON object.
    pub data: JsonObject,
    /// The text search indexes instead of the data's values, when given.
    pub search_text: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A product of an agent's catalog: free JSON fields (`name`, `price`, `description` …) and an id.
#[derive(Clone, Debug, PartialEq)]
pub struct Product {
    /// The agent.
    pub agent_id: String,
    /// Given at creation or `prd_…`; unique within the agent.
    pub id: String,
    /// Every field but `id`.
    pub fields: JsonObject,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One collection of an agent with its size.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionInfo {
    /// The collection's name.
    pub name: String,
    /// How many entries it holds.
    pub entry_count: u64,
    /// When its oldest entry was created.
    pub first_created_at: DateTime<Utc>,
    /// When an entry of it last changed.
    pub last_updated_at: DateTime<Utc>,
}

/// A page of a listing and the number of items that match in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items of the page, in creation order.
    pub items: Vec<T>,
    /// How many items match the listing's filter across all pages.
    pub total: u64,
}

/// A search hit with its score in `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored<T> {
    /// The item.
    pub item: T,
    /// How well it matches, 1 being every term of the query as a whole word (or the item's id itself).
    pub score: f64,
}

/// A ranked full-text search.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    /// What to look for. An item whose id equals it scores 1.
    pub text: String,
    /// At most this many hits, best first.
    pub limit: usize,
    /// Only hits scoring at least this.
    pub threshold: f64,
}

/// A change to a JSON object (an entry's data or a product's fields).
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectChange {
    /// The object becomes this one.
    Replace(JsonObject),
    /// Top-level fields of `set` replace (or add) those of the object, then the fields named in `unset` are removed.
    Merge {
        /// Fields to set.
        set: JsonObject,
        /// Fields to remove.
        unset: Vec<String>,
    },
}

impl ObjectChange {
    /// Applies the change to `target`.
    pub fn apply(&self, target: &mut JsonObject) {
        match self {
            ObjectChange::Replace(object) => *target = object.clone(),
            ObjectChange::Merge { set, unset } => {
                for (key, value) in set {
                    target.insert(key.clone(), value.clone());
                }
                for key in unset {
                    target.remove(key);
                }
            }
        }
    }
}

/// What an update does to an entry's `searchText`.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchTextChange {
    /// Keep it as it is.
    Keep,
    /// Replace it.
    Set(String),
    /// Remove it: search indexes the data's values again.
    Clear,
}

/// An update of one entry, applied atomically by the store.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryUpdate {
    /// The change to the data.
    pub data: ObjectChange,
    /// The change to the `searchText`.
    pub search_text: SearchTextChange,
    /// The time of the change.
    pub updated_at: DateTime<Utc>,
    /// The update is refused ([`Updated::TooLarge`]) when the result would be larger than this.
    pub max_bytes: usize,
}

/// An update of one product, applied atomically by the store. The id never changes.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductUpdate {
    /// The change to the fields (an `id` field in it is ignored).
    pub fields: ObjectChange,
    /// The time of the change.
    pub updated_at: DateTime<Utc>,
    /// The update is refused ([`Updated::TooLarge`]) when the result would be larger than this.
    pub max_bytes: usize,
}

/// What an update did.
#[derive(Clone, Debug, PartialEq)]
pub enum Updated<T> {
    /// Written; here is the new state.
    Done(T),
    /// There is no such item: nothing was written.
    NotFound,
    /// The result would have this many bytes, more than allowed: nothing was written.
    TooLarge(usize),
}

/// The size an entry counts against [`MAX_ENTRY_BYTES`]: its data as compact JSON plus its `searchText`.
pub fn entry_size(data: &JsonObject, search_text: Option<&str>) -> usize {
    serde_json::to_string(data).map(|text| text.len()).unwrap_or(usize::MAX) + search_text.map_or(0, str::len)
}

/// The text search indexes for an entry: its `searchText` when given, otherwise every string and number value of
/// its data (keys are not indexed).
pub fn index_text(data: &JsonObject, search_text: Option<&str>) -> String {
    if let Some(text) = search_text {
        return text.to_owned();
    }
    let mut out = String::new();
    for value in data.values() {
        collect_values(value, &mut out);
    }
    out
}

fn collect_values(value: &Value, out: &mut String) {
    match value {
        Value::String(text) => {
            out.push_str(text);
            out.push('\n');
        }
        Value::Number(number) => {
            out.push_str(&number.to_string());
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|item| collect_values(item, out)),
        Value::Object(object) => object.values().for_each(|item| collect_values(item, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// The terms of a search query: lowercase runs of letters and digits, each once, at most [`MAX_SEARCH_TERMS`].
/// `T-1001` gives `t` and `1001`.
pub fn search_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()) {
        let term = word.to_lowercase();
        if !terms.contains(&term) {
            terms.push(term);
            if terms.len() == MAX_SEARCH_TERMS {
                break;
            }
        }
    }
    terms
}

/// How much a query term weighs: the BM25 inverse document frequency of a term found in `containing` of
/// `total` items. A term every item has weighs little; a term no item has weighs most.
pub fn term_weight(total: u64, containing: u64) -> f64 {
    let (total, containing) = (total as f64, containing.min(total) as f64);
    (1.0 + (total - containing + 0.5) / (containing + 0.5)).ln()
}

/// How one item matched one query term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermMatch {
    /// The item has the term as a word.
    Word,
    /// The item has a word that starts with the term.
    Prefix,
    /// Neither.
    Missing,
}

/// The score of an item: the weighted share of the query's terms it contains, a term found only as a prefix counting
/// [`PREFIX_MATCH_WEIGHT`]. `weights` and `matches` are per term, in the same order. In `[0, 1]`, rounded to 4
/// decimals; 0 for a query without terms.
pub fn score(weights: &[f64], matches: &[TermMatch]) -> f64 {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let found: f64 = weights
        .iter()
        .zip(matches)
        .map(|(weight, found)| match found {
            TermMatch::Word => *weight,
            TermMatch::Prefix => weight * PREFIX_MATCH_WEIGHT,
            TermMatch::Missing => 0.0,
        })
        .sum();
    ((found / total).clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0
}

// --- filters ---

/// The deepest nesting of `$and`/`$or` and nested field objects a filter may have.
const MAX_FILTER_DEPTH: usize = 8;
/// The most conditions one filter may hold.
const MAX_FILTER_CONDITIONS: usize = 100;
/// The most values of one `$in`/`$nin` list.
const MAX_FILTER_LIST: usize = 1000;

/// A bounded Mongo-style filter (lua-cli's `LuaQuery`) over an entry's data or a product's fields.
///
/// `{status: 'open'}` is equality (an array field matches when one of its items is equal; `null` also matches a
/// missing field); `{price: {$gte: 10, $lt: 20}}` applies operators (`$eq $ne $gt $gte $lt $lte $in $nin $exists`);
/// `{address: {city: 'Paris'}}` is the nested field `address.city`, as is the key `'address.city'`; a list value is
/// `$in`; `$and`/`$or` take lists of filters. A path starting with `data.` also reaches the entry's data when the data
/// has no `data` field, so lua-cli filters written against the whole entry work.
#[derive(Clone, Debug, PartialEq)]
pub enum DataFilter {
    /// Every filter holds.
    All(Vec<DataFilter>),
    /// At least one filter holds.
    Any(Vec<DataFilter>),
    /// The field at `path` satisfies `condition`.
    Field {
        /// The path of the field, one segment per object key (or array index).
        path: Vec<String>,
        /// What its value must satisfy.
        condition: Condition,
    },
}

/// A condition on one field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Equal (or, for an array, has an equal item).
    Eq(Value),
    /// Not equal.
    Ne(Value),
    /// Greater than (numbers with numbers, strings with strings).
    Gt(Value),
    /// Greater than or equal.
    Gte(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal.
    Lte(Value),
    /// Equal to one of these.
    In(Vec<Value>),
    /// Equal to none of these.
    Nin(Vec<Value>),
    /// Present (`true`) or absent (`false`).
    Exists(bool),
}

impl DataFilter {
    /// Parses a filter from its JSON form; the error names the offending key and says why.
    pub fn parse(value: &Value) -> std::result::Result<DataFilter, String> {
        let mut budget = MAX_FILTER_CONDITIONS;
        parse_query(value, &[], 0, &mut budget)
    }

    /// Whether `document` (an entry's data, a product) satisfies the filter.
    pub fn matches(&self, document: &JsonObject) -> bool {
        match self {
            DataFilter::All(filters) => filters.iter().all(|filter| filter.matches(document)),
            DataFilter::Any(filters) => filters.iter().any(|filter| filter.matches(document)),
            DataFilter::Field { path, condition } => condition.holds(resolve(document, path)),
        }
    }
}

fn parse_query(
    value: &Value,
    prefix: &[String],
    depth: usize,
    budget: &mut usize,
) -> std::result::Result<DataFilter, String> {
    if depth > MAX_FILTER_DEPTH {
        return Err(format!("is nested deeper than {MAX_FILTER_DEPTH} levels"));
    }
    let Value::Object(object) = value else {
        return Err("must be an object of field conditions".into());
    };
    let mut parts = Vec::with_capacity(object.len());
    for (key, value) in object {
        match key.as_str() {
            "$and" | "$or" => {
                if !prefix.is_empty() {
                    return Err(format!("{key} is allowed only at the top of a filter"));
                }
                let Value::Array(items) = value else {
                    return Err(format!("{key} must be a list of filters"));
                };
                if items.is_empty() {
                    return Err(format!("{key} must not be empty"));
                }
                let branches = items
                    .iter()
                    .map(|item| parse_query(item, prefix, depth + 1, budget))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|error| format!("{key}: {error}"))?;
                parts.push(if key == "$and" { DataFilter::All(branches) } else { DataFilter::Any(branches) });
            }
            operator if operator.starts_with('$') => {
                return Err(format!("{operator} is not a supported operator here"));
            }
            field => {
                if field.is_empty() || field.split('.').any(str::is_empty) {
                    return Err(format!("field name {field:?} is not a valid path"));
                }
                let mut path = prefix.to_vec();
                path.extend(field.split('.').map(str::to_owned));
                parts.push(parse_field(value, path, depth, budget).map_err(|error| format!("{field}: {error}"))?);
            }
        }
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { DataFilter::All(parts) })
}

fn parse_field(
    value: &Value,
    path: Vec<String>,
    depth: usize,
    budget: &mut usize,
) -> std::result::Result<DataFilter, String> {
    let mut spend = || {
        if *budget == 0 {
            return Err(format!("a filter may hold at most {MAX_FILTER_CONDITIONS} conditions"));
        }
        *budget -= 1;
        Ok(())
    };
    match value {
        Value::Object(object) if !object.is_empty() && object.keys().all(|key| key.starts_with('$')) => {
            let mut conditions = Vec::with_capacity(object.len());
            for (operator, operand) in object {
                spend()?;
                let condition = match operator.as_str() {
                    "$eq" => Condition::Eq(scalar(operator, operand)?),
                    "$ne" => Condition::Ne(scalar(operator, operand)?),
                    "$gt" => Condition::Gt(scalar(operator, operand)?),
                    "$gte" => Condition::Gte(scalar(operator, operand)?),
                    "$lt" => Condition::Lt(scalar(operator, operand)?),
                    "$lte" => Condition::Lte(scalar(operator, operand)?),
                    "$in" => Condition::In(scalar_list(operator, operand)?),
                    "$nin" => Condition::Nin(scalar_list(operator, operand)?),
                    "$exists" => match operand {
                        Value::Bool(present) => Condition::Exists(*present),
                        _ => return Err("$exists must be true or false".into()),
                    },
                    other => return Err(format!("{other} is not a supported operator")),
                };
                conditions.push(DataFilter::Field { path: path.clone(), condition });
            }
            Ok(if conditions.len() == 1 { conditions.remove(0) } else { DataFilter::All(conditions) })
        }
        Value::Object(object) if object.keys().any(|key| key.starts_with('$')) => {
            Err("must not mix operators ($…) and field names".into())
        }
        Value::Object(_) => parse_query(value, &path, depth + 1, budget),
        Value::Array(_) => {
            spend()?;
            Ok(DataFilter::Field { path, condition: Condition::In(scalar_list("a list", value)?) })
        }
        scalar_value => {
            spend()?;
            Ok(DataFilter::Field { path, condition: Condition::Eq(scalar_value.clone()) })
        }
    }
}

fn scalar(operator: &str, value: &Value) -> std::result::Result<Value, String> {
    match value {
        Value::Array(_) | Value::Object(_) => Err(format!("{operator} takes a string, number, boolean or null")),
        scalar => Ok(scalar.clone()),
    }
}

fn scalar_list(operator: &str, value: &Value) -> std::result::Result<Vec<Value>, String> {
    let Value::Array(items) = value else {
        return Err(format!("{operator} takes a list of values"));
    };
    if items.len() > MAX_FILTER_LIST {
        return Err(format!("{operator} takes at most {MAX_FILTER_LIST} values"));
    }
    items.iter().map(|item| scalar(operator, item)).collect()
}

fn resolve<'a>(document: &'a JsonObject, path: &[String]) -> Option<&'a Value> {
    let path = match path.split_first() {
        Some((first, rest)) if first == "data" && !rest.is_empty() && !document.contains_key("data") => rest,
        _ => path,
    };
    let (first, rest) = path.split_first()?;
    let mut current = document.get(first)?;
    for segment in rest {
        current = match current {
            Value::Object(object) => object.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

impl Condition {
    fn holds(&self, value: Option<&Value>) -> bool {
        match self {
            Condition::Eq(expected) => equals(value, expected),
            Condition::Ne(expected) => !equals(value, expected),
            Condition::In(list) => list.iter().any(|expected| equals(value, expected)),
            Condition::Nin(list) => !list.iter().any(|expected| equals(value, expected)),
            Condition::Exists(present) => value.is_some() == *present,
            Condition::Gt(bound) => compare(value, bound).is_some_and(std::cmp::Ordering::is_gt),
            Condition::Gte(bound) => compare(value, bound).is_some_and(std::cmp::Ordering::is_ge),
            Condition::Lt(bound) => compare(value, bound).is_some_and(std::cmp::Ordering::is_lt),
            Condition::Lte(bound) => compare(value, bound).is_some_and(std::cmp::Ordering::is_le),
        }
    }
}

fn equals(value: Option<&Value>, expected: &Value) -> bool {
    match value {
        None => expected.is_null(),
        Some(Value::Array(items)) if !expected.is_array() => items.iter().any(|item| same(item, expected)),
        Some(value) => same(value, expected),
    }
}

/// Equality that treats `1` and `1.0` alike.
fn same(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => left == right,
    }
}

fn compare(value: Option<&Value>, bound: &Value) -> Option<std::cmp::Ordering> {
    match (value?, bound) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Storage of `Data` collections and `Products`; every [`crate::Store`] implements it. Each method is one
/// transaction; lookups are always within one agent (and collection), so another agent's items do not exist.
#[async_trait]
pub trait DataStore: Send + Sync + 'static {
    // --- data entries ---

    /// Stores a new entry and indexes it for search.
    async fn data_entry_insert(&self, entry: &DataEntry) -> Result<()>;
    /// One entry of a collection.
    async fn data_entry_get(&self, agent_id: &str, collection: &str, id: &str) -> Result<Option<DataEntry>>;
    /// A page of a collection's entries that match `filter`, in creation order, skipping `offset` of them.
    async fn data_entry_list(
        &self,
        agent_id: &str,
        collection: &str,
        filter: Option<&DataFilter>,
        offset: u64,
        limit: usize,
    ) -> Result<Page<DataEntry>>;
    /// Applies `update` to an entry and re-indexes it.
    async fn data_entry_update(
        &self,
        agent_id: &str,
        collection: &str,
        id: &str,
        update: &EntryUpdate,
    ) -> Result<Updated<DataEntry>>;
    /// Deletes an entry; false when there was none.
    async fn data_entry_delete(&self, agent_id: &str, collection: &str, id: &str) -> Result<bool>;
    /// Ranked full-text search in a collection: hits scoring at least the threshold, best first (see [`score`]);
    /// ties go to the better BM25 rank, then to the older entry.
    async fn data_entry_search(
        &self,
        agent_id: &str,
        collection: &str,
        query: &SearchQuery,
    ) -> Result<Vec<Scored<DataEntry>>>;
    /// The agent's collections that hold entries, by name.
    async fn data_collections(&self, agent_id: &str) -> Result<Vec<CollectionInfo>>;

    // --- products ---

    /// Stores a new product; `Conflict` when the agent has a product with that id.
    async fn product_insert(&self, product: &Product) -> Result<()>;
    /// One product.
    async fn product_get(&self, agent_id: &str, id: &str) -> Result<Option<Product>>;
    /// A page of the agent's products that match `filter` (evaluated on the fields and `id`), in creation order.
    async fn product_list(
        &self,
        agent_id: &str,
        filter: Option<&DataFilter>,
        offset: u64,
        limit: usize,
    ) -> Result<Page<Product>>;
    /// Applies `update` to a product and re-indexes it.
    async fn product_update(&self, agent_id: &str, id: &str, update: &ProductUpdate) -> Result<Updated<Product>>;
    /// Deletes a product; false when there was none.
    async fn product_delete(&self, agent_id: &str, id: &str) -> Result<bool>;
    /// Ranked full-text search over the agent's products (every string and number field is indexed).
    async fn product_search(&self, agent_id: &str, query: &SearchQuery) -> Result<Vec<Scored<Product>>>;
}

/// The checks every [`DataStore`] must pass, in the manner of [`crate::conformance`]: each takes a fresh, empty
/// store and panics with a message when the store misbehaves.
pub mod conformance {
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::{json, Value};
    use sundial_core::JsonObject;

    use super::{
        DataEntry, DataFilter, DataStore, EntryUpdate, ObjectChange, Product, ProductUpdate, SearchQuery,
        SearchTextChange, Updated, MAX_ENTRY_BYTES,
    };
    use crate::{new_id, StoreError};

    /// Every check, by name.
    pub const CHECKS: &[&str] = &[
        "data_entries_crud",
        "data_entries_filter_and_pages",
        "data_search_ranking",
        "data_collections_listing",
        "products_crud_filter_and_search",
    ];

    /// Runs the check called `name` against `store`.
    pub async fn run(name: &str, store: &dyn DataStore) {
        match name {
            "data_entries_crud" => data_entries_crud(store).await,
            "data_entries_filter_and_pages" => data_entries_filter_and_pages(store).await,
            "data_search_ranking" => data_search_ranking(store).await,
            "data_collections_listing" => data_collections_listing(store).await,
            "products_crud_filter_and_search" => products_crud_filter_and_search(store).await,
            other => panic!("unknown data conformance check {other}"),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().unwrap_or_default()
    }

    fn object(value: Value) -> JsonObject {
        match value {
            Value::Object(object) => object,
            other => panic!("test data must be an object, not {other}"),
        }
    }

    fn entry(agent_id: &str, collection: &str, data: Value, search_text: Option<&str>, seconds: i64) -> DataEntry {
        DataEntry {
            agent_id: agent_id.into(),
            collection: collection.into(),
            id: new_id("ent"),
            data: object(data),
            search_text: search_text.map(str::to_owned),
            created_at: at(seconds),
            updated_at: at(seconds),
        }
    }

    async fn insert(store: &dyn DataStore, entry: &DataEntry) {
        store.data_entry_insert(entry).await.expect("insert entry");
    }

    fn query(text: &str, limit: usize, threshold: f64) -> SearchQuery {
        SearchQuery { text: text.into(), limit, threshold }
    }

    fn update(data: ObjectChange, search_text: SearchTextChange, seconds: i64) -> EntryUpdate {
        EntryUpdate { data, search_text, updated_at: at(seconds), max_bytes: MAX_ENTRY_BYTES }
    }

    /// Insert, read, update (merge, replace, searchText), size refusal, delete, and isolation between agents and
    /// collections.
    pub async fn data_entries_crud(store: &dyn DataStore) {
        let ticket = entry("a", "tickets", json!({"ticketId": "T-1", "status": "open"}), None, 0);
        insert(store, &ticket).await;
        let read = store.data_entry_get("a", "tickets", &ticket.id).await.expect("get");
        assert_eq!(read.as_ref(), Some(&ticket), "an entry reads back as written");
        for (agent, collection) in [("b", "tickets"), ("a", "other")] {
            let elsewhere = store.data_entry_get(agent, collection, &ticket.id).await.expect("get");
            assert_eq!(elsewhere, None, "entry visible from agent {agent} collection {collection}");
            let deleted = store.data_entry_delete(agent, collection, &ticket.id).await.expect("delete");
            assert!(!deleted, "entry deleted from agent {agent} collection {collection}");
        }

        let merge = ObjectChange::Merge { set: object(json!({"status": "closed", "note": "x"})), unset: vec![] };
        let outcome = store
            .data_entry_update("a", "tickets", &ticket.id, &update(merge, SearchTextChange::Keep, 5))
            .await
            .expect("merge");
        let Updated::Done(merged) = outcome else { panic!("merge of an existing entry: {outcome:?}") };
        assert_eq!(merged.data, object(json!({"ticketId": "T-1", "status": "closed", "note": "x"})));
        assert_eq!((merged.created_at, merged.updated_at), (at(0), at(5)));

        let unset = ObjectChange::Merge { set: JsonObject::new(), unset: vec!["note".into()] };
        let change = update(unset, SearchTextChange::Set("first ticket".into()), 6);
        let Updated::Done(unset) = store.data_entry_update("a", "tickets", &ticket.id, &change).await.expect("unset")
        else {
            panic!("unset of an existing entry")
        };
        assert_eq!(unset.data, object(json!({"ticketId": "T-1", "status": "closed"})));
        assert_eq!(unset.search_text.as_deref(), Some("first ticket"));

        let replace = update(ObjectChange::Replace(object(json!({"v": 2}))), SearchTextChange::Clear, 7);
        let Updated::Done(replaced) =
            store.data_entry_update("a", "tickets", &ticket.id, &replace).await.expect("replace")
        else {
            panic!("replace of an existing entry")
        };
        assert_eq!((replaced.data, replaced.search_text), (object(json!({"v": 2})), None));
        let again = store.data_entry_get("a", "tickets", &ticket.id).await.expect("get").expect("still there");
        assert_eq!(again.updated_at, at(7), "an update is durable");

        let big = ObjectChange::Replace(object(json!({"blob": "x".repeat(MAX_ENTRY_BYTES)})));
        let outcome =
            store.data_entry_update("a", "tickets", &ticket.id, &update(big, SearchTextChange::Keep, 8)).await;
        assert!(
            matches!(outcome, Ok(Updated::TooLarge(bytes)) if bytes > MAX_ENTRY_BYTES),
            "an oversized update is refused: {outcome:?}"
        );
        let missing = update(ObjectChange::Replace(JsonObject::new()), SearchTextChange::Keep, 9);
        let outcome = store.data_entry_update("b", "tickets", &ticket.id, &missing).await.expect("update");
        assert_eq!(outcome, Updated::NotFound, "another agent updated the entry");

        let hits = store.data_entry_search("a", "tickets", &query("2", 10, 0.0)).await.expect("search");
        assert_eq!(hits.len(), 1, "the replaced data is indexed: {hits:?}");
        assert!(store.data_entry_delete("a", "tickets", &ticket.id).await.expect("delete"));
        assert!(!store.data_entry_delete("a", "tickets", &ticket.id).await.expect("delete twice"));
        assert_eq!(store.data_entry_get("a", "tickets", &ticket.id).await.expect("get"), None);
        let hits = store.data_entry_search("a", "tickets", &query("2", 10, 0.0)).await.expect("search");
        assert!(hits.is_empty(), "a deleted entry is still found: {hits:?}");
    }

    /// Pages in creation order with the total, and filters (equality, operators, nesting, `$or`, `data.` paths).
    pub async fn data_entries_filter_and_pages(store: &dyn DataStore) {
        let mut ids = Vec::new();
        for n in 0..25 {
            let status = if n % 5 == 0 { "closed" } else { "open" };
            let data = json!({"n": n, "status": status, "customer": {"tier": if n < 10 { "gold" } else { "basic" }}});
            let item = entry("a", "orders", data, None, n);
            insert(store, &item).await;
            ids.push(item.id);
        }
        insert(store, &entry("b", "orders", json!({"n": 100, "status": "open"}), None, 0)).await;

        let page = store.data_entry_list("a", "orders", None, 10, 10).await.expect("list");
        assert_eq!(page.total, 25);
        let got: Vec<_> = page.items.iter().map(|item| item.id.clone()).collect();
        assert_eq!(got, ids[10..20], "the second page of ten, in creation order");
        let last = store.data_entry_list("a", "orders", None, 20, 10).await.expect("list");
        assert_eq!(last.items.len(), 5);
        let beyond = store.data_entry_list("a", "orders", None, 100, 10).await.expect("list");
        assert_eq!((beyond.items.len(), beyond.total), (0, 25));

        let check = |filter: Value, expected: Vec<i64>| async move {
            let parsed = DataFilter::parse(&filter).unwrap_or_else(|error| panic!("filter {filter}: {error}"));
            let page = store.data_entry_list("a", "orders", Some(&parsed), 0, 100).await.expect("list");
            let got: Vec<i64> = page.items.iter().filter_map(|item| item.data.get("n")?.as_i64()).collect();
            assert_eq!((got, page.total), (expected.clone(), expected.len() as u64), "filter {filter}");
        };
        check(json!({"status": "closed"}), vec![0, 5, 10, 15, 20]).await;
        check(json!({"data.status": "closed", "n": {"$gte": 10}}), vec![10, 15, 20]).await;
        check(json!({"customer": {"tier": "gold"}, "status": {"$ne": "open"}}), vec![0, 5]).await;
        check(json!({"customer.tier": "basic", "n": {"$lt": 12}}), vec![10, 11]).await;
        check(json!({"$or": [{"n": {"$in": [1, 2]}}, {"n": 24}]}), vec![1, 2, 24]).await;
        check(json!({"n": [3, 4], "missing": {"$exists": false}}), vec![3, 4]).await;
        check(json!({"n": {"$gt": "a string"}}), vec![]).await;

        let filter = DataFilter::parse(&json!({"status": "open"})).expect("filter");
        let page = store.data_entry_list("a", "orders", Some(&filter), 5, 5).await.expect("list");
        let got: Vec<i64> = page.items.iter().filter_map(|item| item.data.get("n")?.as_i64()).collect();
        assert_eq!((got, page.total), (vec![7, 8, 9, 11, 12], 20), "a filtered page counts every match");
    }

    /// Ranked search: a ticket whose data holds the queried id is found above 0.6 and first; the threshold and the
    /// limit apply; `searchText` replaces the data's values; updates re-index; an entry's id finds it; collections and
    /// agents are apart.
    pub async fn data_search_ranking(store: &dyn DataStore) {
        let tickets = [
            json!({"ticketId": "T-1001", "status": "open", "subject": "Printer does not print"}),
            json!({"ticketId": "T-1002", "status": "closed", "subject": "Refund for order 77"}),
            json!({"ticketId": "T-1003", "status": "open", "subject": "Printing is slow on the second floor"}),
        ];
        let mut ids = Vec::new();
        for (n, data) in tickets.iter().enumerate() {
            let item = entry("a", "tickets", data.clone(), None, n as i64);
            insert(store, &item).await;
            ids.push(item.id);
        }
        let described = entry("a", "tickets", json!({"ticketId": "T-2000"}), Some("billing address change"), 10);
        insert(store, &described).await;
        insert(store, &entry("a", "notes", json!({"ticketId": "T-1001"}), None, 11)).await;
        insert(store, &entry("b", "tickets", json!({"ticketId": "T-1001"}), None, 12)).await;

        let hits = store.data_entry_search("a", "tickets", &query("T-1001", 1, 0.6)).await.expect("search");
        assert_eq!(hits.len(), 1, "the seed's Data.search('tickets', ticketId, 1): {hits:?}");
        assert_eq!(hits[0].item.id, ids[0]);
        assert!(hits[0].score >= 0.6 && hits[0].score <= 1.0, "score {}", hits[0].score);
        let all = store.data_entry_search("a", "tickets", &query("T-1001", 10, 0.0)).await.expect("search");
        assert_eq!(all.first().map(|hit| hit.item.id.clone()), Some(ids[0].clone()), "best first: {all:?}");
        assert!(all.windows(2).all(|pair| pair[0].score >= pair[1].score), "ordered by score: {all:?}");
        assert!(all.iter().skip(1).all(|hit| hit.score < 0.6), "other tickets score low: {all:?}");

        let print = store.data_entry_search("a", "tickets", &query("printing", 10, 0.6)).await.expect("search");
        let mut found: Vec<_> = print.iter().map(|hit| (hit.item.id.clone(), hit.score)).collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected = vec![(ids[0].clone(), 1.0), (ids[2].clone(), 1.0)];
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(found, expected, "words share their stem: {print:?}");
        let none = store.data_entry_search("a", "tickets", &query("quantum entanglement", 10, 0.6)).await;
        assert_eq!(none.expect("search"), vec![], "no term matches");

        let text = store.data_entry_search("a", "tickets", &query("billing", 10, 0.6)).await.expect("search");
        assert_eq!(text.iter().map(|hit| hit.item.id.clone()).collect::<Vec<_>>(), vec![described.id.clone()]);
        let not_values = store.data_entry_search("a", "tickets", &query("T-2000", 10, 0.6)).await.expect("search");
        assert!(not_values.is_empty(), "searchText replaces the data's values in the index: {not_values:?}");
        let by_id = store.data_entry_search("a", "tickets", &query(&described.id, 10, 0.6)).await.expect("search");
        assert_eq!(by_id.first().map(|hit| (hit.item.id.clone(), hit.score)), Some((described.id.clone(), 1.0)));

        let change = update(
            ObjectChange::Merge { set: object(json!({"subject": "Scanner jams"})), unset: vec![] },
            SearchTextChange::Keep,
            20,
        );
        store.data_entry_update("a", "tickets", &ids[0], &change).await.expect("update");
        let scanner = store.data_entry_search("a", "tickets", &query("scanner", 10, 0.6)).await.expect("search");
        assert_eq!(scanner.iter().map(|hit| hit.item.id.clone()).collect::<Vec<_>>(), vec![ids[0].clone()]);
        let prefix = store.data_entry_search("a", "tickets", &query("scan", 10, 0.6)).await.expect("search");
        let found: Vec<_> = prefix.iter().map(|hit| (hit.item.id.clone(), hit.score)).collect();
        assert_eq!(found, vec![(ids[0].clone(), super::PREFIX_MATCH_WEIGHT)], "a prefix of a word counts less");
        let printer = store.data_entry_search("a", "tickets", &query("printer", 10, 0.9)).await.expect("search");
        assert!(printer.iter().all(|hit| hit.item.id != ids[0]), "an update re-indexes: {printer:?}");

        let other = store.data_entry_search("b", "tickets", &query("T-1001", 10, 0.6)).await.expect("search");
        assert_eq!(other.len(), 1, "agent b has its own ticket: {other:?}");
        assert_eq!(other[0].item.agent_id, "b");
        let empty = store.data_entry_search("a", "tickets", &query("  --  ", 10, 0.0)).await.expect("search");
        assert!(empty.is_empty(), "a query without terms finds nothing: {empty:?}");
    }

    /// Collections are listed per agent with counts and times; an emptied collection disappears.
    pub async fn data_collections_listing(store: &dyn DataStore) {
        let first = entry("a", "tickets", json!({"x": 1}), None, 1);
        insert(store, &first).await;
        insert(store, &entry("a", "tickets", json!({"x": 2}), None, 5)).await;
        let note = entry("a", "notes", json!({"x": 3}), None, 3);
        insert(store, &note).await;
        insert(store, &entry("b", "secret", json!({"x": 4}), None, 4)).await;
        let listed = store.data_collections("a").await.expect("collections");
        let summary: Vec<_> = listed
            .iter()
            .map(|info| (info.name.as_str(), info.entry_count, info.first_created_at, info.last_updated_at))
            .collect();
        assert_eq!(summary, vec![("notes", 1, at(3), at(3)), ("tickets", 2, at(1), at(5))]);
        assert!(store.data_entry_delete("a", "notes", &note.id).await.expect("delete"));
        let names: Vec<_> =
            store.data_collections("a").await.expect("collections").into_iter().map(|info| info.name).collect();
        assert_eq!(names, vec!["tickets"]);
    }

    /// Products: ids unique per agent, merge and replace updates that keep the id, filters, pages, search.
    pub async fn products_crud_filter_and_search(store: &dyn DataStore) {
        let product = |id: &str, fields: Value, seconds: i64| Product {
            agent_id: "a".into(),
            id: id.into(),
            fields: object(fields),
            created_at: at(seconds),
            updated_at: at(seconds),
        };
        let catalog = [
            product("p1", json!({"name": "Wireless Mouse", "price": 25.5, "category": "electronics"}), 0),
            product("p2", json!({"name": "Mechanical Keyboard", "price": 80, "category": "electronics"}), 1),
            product("p3", json!({"name": "Coffee Mug", "price": 9.99, "description": "A mug for the desk"}), 2),
        ];
        for item in &catalog {
            store.product_insert(item).await.expect("insert product");
        }
        let twin = Product { agent_id: "b".into(), ..catalog[0].clone() };
        store.product_insert(&twin).await.expect("the same id in another agent");
        let duplicate = store.product_insert(&catalog[0]).await;
        assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "a duplicate id: {duplicate:?}");

        assert_eq!(store.product_get("a", "p2").await.expect("get").as_ref(), Some(&catalog[1]));
        assert_eq!(store.product_get("c", "p2").await.expect("get"), None, "another agent read a product");
        let page = store.product_list("a", None, 1, 1).await.expect("list");
        assert_eq!((page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), page.total), (vec!["p2"], 3));
        let cheap = DataFilter::parse(&json!({"price": {"$lte": 30}})).expect("filter");
        let page = store.product_list("a", Some(&cheap), 0, 10).await.expect("list");
        assert_eq!(page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["p1", "p3"]);
        let by_id = DataFilter::parse(&json!({"id": "p3"})).expect("filter");
        let page = store.product_list("a", Some(&by_id), 0, 10).await.expect("list");
        assert_eq!(page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["p3"], "filter on id");

        let merge = ProductUpdate {
            fields: ObjectChange::Merge { set: object(json!({"price": 19, "id": "hijack"})), unset: vec![] },
            updated_at: at(10),
            max_bytes: MAX_ENTRY_BYTES,
        };
        let Updated::Done(updated) = store.product_update("a", "p1", &merge).await.expect("update") else {
            panic!("update of an existing product")
        };
        assert_eq!(updated.id, "p1", "an update keeps the id");
        assert_eq!(updated.fields.get("price"), Some(&json!(19)));
        assert_eq!(updated.fields.get("name"), Some(&json!("Wireless Mouse")));
        assert!(!updated.fields.contains_key("id"), "the id is not a field");
        let replace = ProductUpdate {
            fields: ObjectChange::Replace(object(json!({"name": "Trackball"}))),
            updated_at: at(11),
            max_bytes: MAX_ENTRY_BYTES,
        };
        let outcome = store.product_update("b", "p3", &replace).await.expect("update");
        assert_eq!(outcome, Updated::NotFound, "another agent's product");
        let Updated::Done(replaced) = store.product_update("a", "p1", &replace).await.expect("update") else {
            panic!("replace of an existing product")
        };
        assert_eq!(replaced.fields, object(json!({"name": "Trackball"})));

        let hits = store.product_search("a", &query("mechanical keyboard", 5, 0.3)).await.expect("search");
        assert_eq!(hits.first().map(|hit| hit.item.id.as_str()), Some("p2"), "{hits:?}");
        assert_eq!(hits[0].score, 1.0);
        let mugs = store.product_search("a", &query("desk", 5, 0.3)).await.expect("search");
        assert_eq!(mugs.iter().map(|hit| hit.item.id.as_str()).collect::<Vec<_>>(), vec!["p3"]);
        let old = store.product_search("a", &query("wireless", 5, 0.3)).await.expect("search");
        assert!(old.is_empty(), "a replaced product is re-indexed: {old:?}");

        assert!(store.product_delete("a", "p2").await.expect("delete"));
        assert!(!store.product_delete("a", "p2").await.expect("delete twice"));
        let gone = store.product_search("a", &query("keyboard", 5, 0.0)).await.expect("search");
        assert!(gone.is_empty(), "a deleted product is still found: {gone:?}");
        assert_eq!(store.product_get("b", "p1").await.expect("get").map(|p| p.fields), Some(catalog[0].fields.clone()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn terms_are_lowercase_words_once() {
        assert_eq!(search_terms("T-1001 t, Ünïcode  café!"), vec!["t", "1001", "ünïcode", "café"]);
        assert!(search_terms(" -- ").is_empty());
    }

    #[test]
    fn rare_terms_weigh_more_and_scores_stay_in_range() {
        assert!(term_weight(100, 1) > term_weight(100, 50));
        assert!(term_weight(1, 0) > term_weight(1, 1) && term_weight(1, 1) > 0.0);
        let weights = [term_weight(3, 3), term_weight(3, 1)];
        assert_eq!(score(&weights, &[TermMatch::Word, TermMatch::Word]), 1.0);
        assert!(score(&weights, &[TermMatch::Word, TermMatch::Missing]) < 0.2);
        assert_eq!(score(&[], &[]), 0.0);
    }

    #[test]
    fn index_text_is_the_search_text_or_the_values() {
        let data = match json!({"id": "T-1", "n": 7, "tags": ["a", {"b": "c"}], "ok": true}) {
            Value::Object(object) => object,
            _ => unreachable!("an object literal"),
        };
        assert_eq!(index_text(&data, None), "T-1\n7\na\nc\n");
        assert_eq!(index_text(&data, Some("custom")), "custom");
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let cases = [
            (json!([1]), "must be an object of field conditions"),
            (json!({"a": {"$regex": "x"}}), "a: $regex is not a supported operator"),
            (json!({"a": {"$gt": [1]}}), "a: $gt takes a string, number, boolean or null"),
            (json!({"a": {"$gt": 1, "b": 2}}), "a: must not mix operators ($…) and field names"),
            (json!({"$or": {}}), "$or must be a list of filters"),
            (json!({"$where": "1"}), "$where is not a supported operator here"),
            (json!({"a..b": 1}), "field name \"a..b\" is not a valid path"),
        ];
        for (filter, expected) in cases {
            assert_eq!(DataFilter::parse(&filter).err().as_deref(), Some(expected), "{filter}");
        }
        let deep = (0..12).fold(json!(1), |inner, _| json!({ "a": inner }));
        assert!(DataFilter::parse(&deep).is_err(), "a filter nested too deep");
    }
}
