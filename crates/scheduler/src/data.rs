//! Host calls of job code for the agent's `Data` collections and `Products`, and the [`Engine`] operations behind
//! them that the HTTP routes share: validation with errors that name the argument, and the JSON views.
//!
//! Shapes (what job code receives; the prelude turns `{data: [...]}` answers of `get`/`search` into arrays that also
//! answer `.data` and keep the other fields, e.g. `.pagination`):
//!
//! | call | answer |
//! |---|---|
//! | `Data.create(collection, data, searchText? \| {searchText, index})` | the entry `{id, data, createdAt, updatedAt, searchText?}` (times in Unix ms, as lua-cli's `CustomDataEntry`) |
//! | `Data.get(collection, filter?, page = 1, limit = 10)` | `{data: [entry], pagination}` |
//! | `Data.getEntry(collection, id)` | the entry, or `null` |
//! | `Data.update(collection, id, data, searchText?)` | the updated entry plus lua-cli's `{status: 'success', message}`; `data`'s top-level fields are merged into the entry's (lua-cli's `DataEntryInstance.update` merges too) |
//! | `Data.search(collection, text, limit = 10, scoreThreshold = 0.6)` | `{data: [entry + score]}`, best first |
//! | `Data.delete(collection, id)` | `{status: 'success', message}` |
//! | `Products.get(page = 1, limit = 10)` or `get({page, limit, filter})` | `{data: [product], products: [product], pagination}` |
//! | `Products.getById(id)` | the product, or `null` |
//! | `Products.create(product)` | the product with its `id` |
//! | `Products.update(fields, id)` | `{updated: true, product}` (fields merged, as lua-cli's partial update) |
//! | `Products.delete(id)` | `{deleted: true}` |
//! | `Products.search(query, limit = 5)` | `{data: [product], products: [product]}`, best first |
//!
//! A missing entry or product makes `update`/`delete` fail with an error that names it.

use serde_json::{json, Value};
use sundial_core::{FieldError, JsonObject};
use sundial_store::data::{
    entry_size, CollectionInfo, DataEntry, DataFilter, EntryUpdate, ObjectChange, Page, Product, ProductUpdate, Scored,
    SearchQuery, SearchTextChange, Updated, MAX_ENTRY_BYTES,
};
use sundial_store::new_id;

use crate::engine::{Engine, EngineError, EngineResult};

/// `Data` and `Products` writes one execution may make (the host counts them; see [`is_write`]).
pub const MAX_DATA_WRITES_PER_EXECUTION: u32 = 1000;
/// The largest page of `Data.get` / `Products.get`.
pub const MAX_PAGE_LIMIT: usize = 1000;
/// The most hits one search returns.
pub const MAX_SEARCH_LIMIT: usize = 100;
/// The longest search text, in bytes.
pub const MAX_SEARCH_TEXT_BYTES: usize = 4096;
/// The longest product id, in bytes.
pub const MAX_PRODUCT_ID_BYTES: usize = 128;
/// `Data.search`'s default minimum score (lua-cli's).
pub const DEFAULT_DATA_SCORE_THRESHOLD: f64 = 0.6;
/// `Products.search`'s minimum score (lua-cli's call has no threshold; this drops hits on a stray common word).
pub const DEFAULT_PRODUCT_SCORE_THRESHOLD: f64 = 0.3;

/// Whether a host call method writes (counts against [`MAX_DATA_WRITES_PER_EXECUTION`]).
pub fn is_write(method: &str) -> bool {
    matches!(
        method,
        "Data.create" | "Data.update" | "Data.delete" | "Products.create" | "Products.update" | "Products.delete"
    )
}

// --- validation ---

/// Checks a collection name: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_collection(collection: &str) -> Result<(), FieldError> {
    let valid = !collection.is_empty()
        && collection.len() <= 64
        && collection.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if !valid {
        return Err(FieldError::new("collection", "must be 1 to 64 characters of letters, digits, '_' or '-'"));
    }
    Ok(())
}

fn too_large(field: &str, bytes: usize) -> EngineError {
    EngineError::Invalid(FieldError::new(
        field,
        format!("must be at most {MAX_ENTRY_BYTES} bytes as JSON, not {bytes}"),
    ))
}

fn object_field(value: &Value, field: &str) -> Result<JsonObject, FieldError> {
    match value {
        Value::Object(object) => Ok(object.clone()),
        _ => Err(FieldError::new(field, "must be a JSON object")),
    }
}

fn parse_filter(filter: Option<&Value>) -> Result<Option<DataFilter>, FieldError> {
    match filter {
        None | Some(Value::Null) => Ok(None),
        Some(value) => DataFilter::parse(value).map(Some).map_err(|reason| FieldError::new("filter", reason)),
    }
}

fn offset(page: u64, limit: usize) -> Result<u64, FieldError> {
    if page == 0 {
        return Err(FieldError::new("page", "must be a whole number of at least 1"));
    }
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(FieldError::new("limit", format!("must be a whole number between 1 and {MAX_PAGE_LIMIT}")));
    }
    Ok((page - 1).saturating_mul(limit as u64))
}

fn search_query(field: &str, text: &str, limit: usize, threshold: f64) -> Result<SearchQuery, FieldError> {
    if text.chars().count() > MAX_SEARCH_TEXT_BYTES {
        return Err(FieldError::new(field, format!("must be at most {MAX_SEARCH_TEXT_BYTES} characters")));
    }
    if limit == 0 || limit > MAX_SEARCH_LIMIT {
        return Err(FieldError::new("limit", format!("must be a whole number between 1 and {MAX_SEARCH_LIMIT}")));
    }
    if !(0.0..=1.0).contains(&threshold) {
        return Err(FieldError::new("scoreThreshold", "must be a number between 0 and 1"));
    }
    Ok(SearchQuery { text: text.to_owned(), limit, threshold })
}

/// The `searchText` of a create or update: a string, `{searchText?, index?}` (lua-cli's options; `index` declares
/// fields to index, which SQLite does not need, and is accepted and ignored), or nothing.
pub fn parse_search_option(value: Option<&Value>) -> Result<Option<String>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Object(options)) => {
            if let Some(index) = options.get("index") {
                let valid = match index {
                    Value::Null => true,
                    Value::Array(items) => items.iter().all(|item| match item {
                        Value::String(_) => true,
                        Value::Array(names) => names.iter().all(Value::is_string),
                        _ => false,
                    }),
                    _ => false,
                };
                if !valid {
                    return Err(FieldError::new("index", "must be a list of field names or of lists of field names"));
                }
            }
            match options.get("searchText") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(FieldError::new("searchText", "must be a string")),
            }
        }
        Some(_) => Err(FieldError::new("searchText", "must be a string or {searchText, index}")),
    }
}

/// A patch `{set?, unset?, searchText?}` (lua-cli's `PATCH`): fields to set, fields to remove, and a new `searchText`
/// (`null` removes it).
pub fn parse_patch(body: &Value) -> Result<(ObjectChange, SearchTextChange), FieldError> {
    let Value::Object(body) = body else {
        return Err(FieldError::new("body", "must be a JSON object {set?, unset?, searchText?}"));
    };
    let set = match body.get("set") {
        None | Some(Value::Null) => JsonObject::new(),
        Some(value) => object_field(value, "set")?,
    };
    let unset = match body.get("unset") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| FieldError::new("unset", "must be a list of field names"))?,
        Some(_) => return Err(FieldError::new("unset", "must be a list of field names")),
    };
    let search_text = match body.get("searchText") {
        None => SearchTextChange::Keep,
        Some(Value::Null) => SearchTextChange::Clear,
        Some(Value::String(text)) => SearchTextChange::Set(text.clone()),
        Some(_) => return Err(FieldError::new("searchText", "must be a string or null")),
    };
    Ok((ObjectChange::Merge { set, unset }, search_text))
}

/// Checks a product's fields: an object whose `name` is a non-empty string and whose `price`, when present, is a
/// number. Answers the fields without `id`.
fn product_fields(value: &Value) -> Result<JsonObject, FieldError> {
    let mut fields = object_field(value, "product")?;
    fields.remove("id");
    check_product_fields(&fields)?;
    Ok(fields)
}

/// Checks a new product (`with_id`: its `id` too, when given) or a product's new fields as [`Engine::product_create`]
/// does, without writing anything.
pub fn check_product(product: &Value, with_id: bool) -> Result<(), FieldError> {
    if let Some(id) = product.get("id").filter(|id| with_id && !id.is_null()) {
        validate_product_id(id.as_str().ok_or_else(|| FieldError::new("id", "must be a string"))?)?;
    }
    product_fields(product).map(|_| ())
}

fn check_product_fields(fields: &JsonObject) -> Result<(), FieldError> {
    match fields.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        _ => return Err(FieldError::new("name", "is required and must be a non-empty string")),
    }
    match fields.get("price") {
        None | Some(Value::Null) | Some(Value::Number(_)) => Ok(()),
        Some(_) => Err(FieldError::new("price", "must be a number")),
    }
}

/// Checks a product id given by the caller: 1–128 bytes without control characters, and not `search`.
pub fn validate_product_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty()
        || id.chars().count() > MAX_PRODUCT_ID_BYTES
        || id.chars().any(char::is_control)
        || id.contains('/')
    {
        return Err(FieldError::new("id", "must be 1 to 128 characters without control characters or '/'"));
    }
    if id == "search" {
        return Err(FieldError::new("id", "must not be \"search\" (a route name)"));
    }
    Ok(())
}

// --- views ---

/// An entry as lua-cli's `CustomDataEntry`: `{id, data, createdAt, updatedAt, searchText?}`, times in Unix ms.
pub fn entry_view(entry: &DataEntry) -> Value {
    let mut view = json!({
        "id": entry.id,
        "data": entry.data,
        "createdAt": entry.created_at.timestamp_millis(),
        "updatedAt": entry.updated_at.timestamp_millis(),
    });
    if let Some(text) = &entry.search_text {
        view["searchText"] = json!(text);
    }
    view
}

/// A search hit: the entry with its `score`.
pub fn scored_entry_view(hit: &Scored<DataEntry>) -> Value {
    let mut view = entry_view(&hit.item);
    view["score"] = json!(hit.score);
    view
}

/// A product: its fields and `id`.
pub fn product_view(product: &Product) -> Value {
    let mut view = JsonObject::new();
    view.insert("id".into(), json!(product.id));
    for (key, value) in &product.fields {
        view.insert(key.clone(), value.clone());
    }
    Value::Object(view)
}

/// Pagination in both spellings: `{page, limit, total, totalPages}` and lua-cli's `Pagination`
/// (`currentPage, totalCount, hasNextPage, hasPrevPage, nextPage, prevPage`).
pub fn pagination_view(page: u64, limit: usize, total: u64) -> Value {
    let total_pages = total.div_ceil(limit.max(1) as u64);
    let has_next = page < total_pages;
    let has_prev = page > 1;
    json!({
        "page": page,
        "limit": limit,
        "total": total,
        "totalPages": total_pages,
        "currentPage": page,
        "totalCount": total,
        "hasNextPage": has_next,
        "hasPrevPage": has_prev,
        "nextPage": if has_next { Some(page + 1) } else { None },
        "prevPage": if has_prev { Some(page - 1) } else { None },
    })
}

/// A collection as lua-cli's `CustomDataCollectionInfo`: `{name, entryCount, firstCreatedAt, lastUpdatedAt}`.
pub fn collection_view(info: &CollectionInfo) -> Value {
    json!({
        "name": info.name,
        "entryCount": info.entry_count,
        "firstCreatedAt": info.first_created_at.timestamp_millis(),
        "lastUpdatedAt": info.last_updated_at.timestamp_millis(),
    })
}

// --- engine operations ---

impl Engine {
    /// Adds an entry to a collection (created with its first entry).
    pub async fn data_create(
        &self,
        agent_id: &str,
        collection: &str,
        data: &Value,
        search_text: Option<&str>,
    ) -> EngineResult<DataEntry> {
        validate_collection(collection)?;
        let data = object_field(data, "data")?;
        let size = entry_size(&data, search_text);
        if size > MAX_ENTRY_BYTES {
            return Err(too_large("data", size));
        }
        let now = self.now();
        let entry = DataEntry {
            agent_id: agent_id.to_owned(),
            collection: collection.to_owned(),
            id: new_id("ent"),
            data,
            search_text: search_text.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        self.store().data_entry_insert(&entry).await?;
        Ok(entry)
    }

    /// A page (from 1) of a collection's entries matching `filter` (a lua-cli `LuaQuery`), in creation order.
    pub async fn data_list(
        &self,
        agent_id: &str,
        collection: &str,
        filter: Option<&Value>,
        page: u64,
        limit: usize,
    ) -> EngineResult<Page<DataEntry>> {
        validate_collection(collection)?;
        let filter = parse_filter(filter)?;
        let offset = offset(page, limit)?;
        Ok(self.store().data_entry_list(agent_id, collection, filter.as_ref(), offset, limit).await?)
    }

    /// One entry.
    pub async fn data_entry(&self, agent_id: &str, collection: &str, id: &str) -> EngineResult<Option<DataEntry>> {
        validate_collection(collection)?;
        Ok(self.store().data_entry_get(agent_id, collection, id).await?)
    }

    /// Changes an entry; `NotFound("entry")` when there is none.
    pub async fn data_update(
        &self,
        agent_id: &str,
        collection: &str,
        id: &str,
        data: ObjectChange,
        search_text: SearchTextChange,
    ) -> EngineResult<DataEntry> {
        validate_collection(collection)?;
        let update = EntryUpdate { data, search_text, updated_at: self.now(), max_bytes: MAX_ENTRY_BYTES };
        match self.store().data_entry_update(agent_id, collection, id, &update).await? {
            Updated::Done(entry) => Ok(entry),
            Updated::NotFound => Err(EngineError::NotFound("entry")),
            Updated::TooLarge(bytes) => Err(too_large("data", bytes)),
        }
    }

    /// Deletes an entry; `NotFound("entry")` when there is none.
    pub async fn data_delete(&self, agent_id: &str, collection: &str, id: &str) -> EngineResult<()> {
        validate_collection(collection)?;
        if !self.store().data_entry_delete(agent_id, collection, id).await? {
            return Err(EngineError::NotFound("entry"));
        }
        Ok(())
    }

    /// Ranked full-text search in a collection.
    pub async fn data_search(
        &self,
        agent_id: &str,
        collection: &str,
        text: &str,
        limit: usize,
        threshold: f64,
    ) -> EngineResult<Vec<Scored<DataEntry>>> {
        validate_collection(collection)?;
        let query = search_query("searchText", text, limit, threshold)?;
        Ok(self.store().data_entry_search(agent_id, collection, &query).await?)
    }

    /// The agent's collections.
    pub async fn data_collections(&self, agent_id: &str) -> EngineResult<Vec<CollectionInfo>> {
        Ok(self.store().data_collections(agent_id).await?)
    }

    /// Adds a product: the given `id` (unique within the agent, `Conflict` otherwise) or a new `prd_…`.
    pub async fn product_create(&self, agent_id: &str, product: &Value) -> EngineResult<Product> {
        let id = match product.get("id") {
            None | Some(Value::Null) => new_id("prd"),
            Some(Value::String(id)) => {
                validate_product_id(id)?;
                id.clone()
            }
            Some(_) => return Err(FieldError::new("id", "must be a string").into()),
        };
        let fields = product_fields(product)?;
        let size = entry_size(&fields, None);
        if size > MAX_ENTRY_BYTES {
            return Err(too_large("product", size));
        }
        let now = self.now();
        let product = Product { agent_id: agent_id.to_owned(), id, fields, created_at: now, updated_at: now };
        self.store().product_insert(&product).await?;
        Ok(product)
    }

    /// A page (from 1) of the agent's products matching `filter`, in creation order.
    pub async fn product_list(
        &self,
        agent_id: &str,
        filter: Option<&Value>,
        page: u64,
        limit: usize,
    ) -> EngineResult<Page<Product>> {
        let filter = parse_filter(filter)?;
        let offset = offset(page, limit)?;
        Ok(self.store().product_list(agent_id, filter.as_ref(), offset, limit).await?)
    }

    /// One product.
    pub async fn product(&self, agent_id: &str, id: &str) -> EngineResult<Option<Product>> {
        Ok(self.store().product_get(agent_id, id).await?)
    }

    /// Changes a product (its id never changes); `NotFound("product")` when there is none.
    pub async fn product_update(&self, agent_id: &str, id: &str, change: ObjectChange) -> EngineResult<Product> {
        let change = match change {
            ObjectChange::Replace(fields) => ObjectChange::Replace(product_fields(&Value::Object(fields))?),
            ObjectChange::Merge { mut set, unset } => {
                set.remove("id");
                if let Some(name) = set.get("name") {
                    if name.as_str().is_none_or(|name| name.trim().is_empty()) {
                        return Err(FieldError::new("name", "must be a non-empty string").into());
                    }
                }
                if unset.iter().any(|field| field == "name") {
                    return Err(FieldError::new("unset", "must not remove name").into());
                }
                if set.get("price").is_some_and(|price| !price.is_number() && !price.is_null()) {
                    return Err(FieldError::new("price", "must be a number").into());
                }
                ObjectChange::Merge { set, unset }
            }
        };
        let update = ProductUpdate { fields: change, updated_at: self.now(), max_bytes: MAX_ENTRY_BYTES };
        match self.store().product_update(agent_id, id, &update).await? {
            Updated::Done(product) => Ok(product),
            Updated::NotFound => Err(EngineError::NotFound("product")),
            Updated::TooLarge(bytes) => Err(too_large("product", bytes)),
        }
    }

    /// Deletes a product; `NotFound("product")` when there is none.
    pub async fn product_delete(&self, agent_id: &str, id: &str) -> EngineResult<()> {
        if !self.store().product_delete(agent_id, id).await? {
            return Err(EngineError::NotFound("product"));
        }
        Ok(())
    }

    /// Ranked full-text search over the agent's products.
    pub async fn product_search(
        &self,
        agent_id: &str,
        text: &str,
        limit: usize,
        threshold: f64,
    ) -> EngineResult<Vec<Scored<Product>>> {
        let query = search_query("query", text, limit, threshold)?;
        Ok(self.store().product_search(agent_id, &query).await?)
    }
}

// --- host calls ---

/// The positional arguments of one host call, with errors that name the method and the argument.
struct Arguments<'a> {
    method: &'a str,
    values: Vec<Value>,
}

impl Arguments<'_> {
    /// The argument at `index`; `undefined` and `null` are absent.
    fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index).filter(|value| !value.is_null())
    }

    fn error(&self, name: &str, reason: &str) -> String {
        format!("{}: {name} {reason}", self.method)
    }

    fn string(&self, index: usize, name: &str) -> Result<String, String> {
        match self.get(index) {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(self.error(name, "must be a string")),
        }
    }

    /// A string, or a number written as text (`Data.search('tickets', 1001)`).
    fn text(&self, index: usize, name: &str) -> Result<String, String> {
        match self.get(index) {
            Some(Value::String(text)) => Ok(text.clone()),
            Some(Value::Number(number)) => Ok(number.to_string()),
            _ => Err(self.error(name, "must be a string")),
        }
    }

    fn whole(&self, index: usize, name: &str, default: u64) -> Result<u64, String> {
        whole(self.get(index), default).ok_or_else(|| self.error(name, "must be a whole number of at least 1"))
    }

    fn number(&self, index: usize, name: &str, default: f64) -> Result<f64, String> {
        match self.get(index) {
            None => Ok(default),
            Some(value) => value.as_f64().ok_or_else(|| self.error(name, "must be a number")),
        }
    }

    /// Turns an engine error into the message job code sees.
    fn fail(&self, error: EngineError) -> String {
        match error {
            EngineError::Invalid(field) => format!("{}: {} {}", self.method, field.field, field.reason),
            other => format!("{}: {other}", self.method),
        }
    }
}

/// A positive whole number from JSON (a JS number such as `2` or `2.0`); `None` when it is not one.
fn whole(value: Option<&Value>, default: u64) -> Option<u64> {
    match value {
        None | Some(Value::Null) => Some(default),
        Some(value) => {
            let number = value.as_f64()?;
            (number >= 1.0 && number.fract() == 0.0 && number <= 1e15).then_some(number as u64)
        }
    }
}

/// The `{data, products, pagination?}` answer of `Products.get` / `Products.search`.
fn product_list_answer(products: Vec<Value>, pagination: Option<Value>) -> Value {
    let mut answer = json!({ "data": products.clone(), "products": products });
    if let Some(pagination) = pagination {
        answer["pagination"] = pagination;
    }
    answer
}

/// Answers `Data.<method>` and `Products.<method>` host calls for the agent `agent_id`. The sandbox prelude sends
/// `{"args": [positional arguments]}`.
pub(crate) async fn host_call(engine: &Engine, agent_id: &str, method: &str, args: Value) -> Result<Value, String> {
    let values = match args.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values.clone(),
        Some(_) => return Err(format!("{method}: arguments must be a list")),
    };
    let args = Arguments { method, values };
    let fail = |error| args.fail(error);
    match method {
        "Data.create" => {
            let collection = args.string(0, "collection")?;
            let data = args.get(1).ok_or_else(|| args.error("data", "must be a JSON object"))?;
            let search_text = parse_search_option(args.get(2)).map_err(|error| fail(error.into()))?;
            let entry = engine.data_create(agent_id, &collection, data, search_text.as_deref()).await.map_err(fail)?;
            Ok(entry_view(&entry))
        }
        "Data.get" => {
            let collection = args.string(0, "collection")?;
            let page = args.whole(2, "page", 1)?;
            let limit = args.whole(3, "limit", 10)? as usize;
            let found = engine.data_list(agent_id, &collection, args.get(1), page, limit).await.map_err(fail)?;
            let entries: Vec<Value> = found.items.iter().map(entry_view).collect();
            Ok(json!({ "data": entries, "pagination": pagination_view(page, limit, found.total) }))
        }
        "Data.getEntry" => {
            let collection = args.string(0, "collection")?;
            let id = args.string(1, "id")?;
            let entry = engine.data_entry(agent_id, &collection, &id).await.map_err(fail)?;
            Ok(entry.as_ref().map_or(Value::Null, entry_view))
        }
        "Data.update" => {
            let collection = args.string(0, "collection")?;
            let id = args.string(1, "id")?;
            let data = match args.get(2) {
                Some(Value::Object(data)) => data.clone(),
                _ => return Err(args.error("data", "must be a JSON object")),
            };
            let search_text = match parse_search_option(args.get(3)).map_err(|error| fail(error.into()))? {
                Some(text) => SearchTextChange::Set(text),
                None => SearchTextChange::Keep,
            };
            let change = ObjectChange::Merge { set: data, unset: Vec::new() };
            let entry = engine
                .data_update(agent_id, &collection, &id, change, search_text)
                .await
                .map_err(|error| not_found_entry(&args, error, &collection, &id))?;
            let mut view = entry_view(&entry);
            view["status"] = json!("success");
            view["message"] = json!(format!("entry {id} updated"));
            Ok(view)
        }
        "Data.search" => {
            let collection = args.string(0, "collection")?;
            let text = args.text(1, "searchText")?;
            let limit = args.whole(2, "limit", 10)? as usize;
            let threshold = args.number(3, "scoreThreshold", DEFAULT_DATA_SCORE_THRESHOLD)?;
            let hits = engine.data_search(agent_id, &collection, &text, limit, threshold).await.map_err(fail)?;
            Ok(json!({ "data": hits.iter().map(scored_entry_view).collect::<Vec<_>>() }))
        }
        "Data.delete" => {
            let collection = args.string(0, "collection")?;
            let id = args.string(1, "id")?;
            engine
                .data_delete(agent_id, &collection, &id)
                .await
                .map_err(|error| not_found_entry(&args, error, &collection, &id))?;
            Ok(json!({"status": "success", "message": format!("entry {id} deleted")}))
        }
        "Products.get" => {
            let (page, limit, filter) = match args.get(0) {
                Some(Value::Object(options)) => {
                    let page = whole(options.get("page"), 1)
                        .ok_or_else(|| args.error("page", "must be a whole number of at least 1"))?;
                    let limit = whole(options.get("limit"), 10)
                        .ok_or_else(|| args.error("limit", "must be a whole number of at least 1"))?;
                    (page, limit as usize, options.get("filter").cloned())
                }
                _ => (args.whole(0, "page", 1)?, args.whole(1, "limit", 10)? as usize, None),
            };
            let found = engine.product_list(agent_id, filter.as_ref(), page, limit).await.map_err(fail)?;
            let products = found.items.iter().map(product_view).collect();
            Ok(product_list_answer(products, Some(pagination_view(page, limit, found.total))))
        }
        "Products.getById" => {
            let id = args.string(0, "id")?;
            let product = engine.product(agent_id, &id).await.map_err(fail)?;
            Ok(product.as_ref().map_or(Value::Null, product_view))
        }
        "Products.create" => {
            let product = args.get(0).ok_or_else(|| args.error("product", "must be a JSON object"))?;
            Ok(product_view(&engine.product_create(agent_id, product).await.map_err(fail)?))
        }
        "Products.update" => {
            let fields = match args.get(0) {
                Some(Value::Object(fields)) => fields.clone(),
                _ => return Err(args.error("product", "must be a JSON object")),
            };
            let id = match (args.get(1), fields.get("id")) {
                (Some(_), _) => args.string(1, "id")?,
                (None, Some(Value::String(id))) => id.clone(),
                _ => return Err(args.error("id", "must be a string")),
            };
            let change = ObjectChange::Merge { set: fields, unset: Vec::new() };
            let product = engine.product_update(agent_id, &id, change).await.map_err(|error| match error {
                EngineError::NotFound(_) => format!("{method}: no product {id}"),
                other => fail(other),
            })?;
            Ok(json!({"updated": true, "product": product_view(&product)}))
        }
        "Products.delete" => {
            let id = args.string(0, "id")?;
            engine.product_delete(agent_id, &id).await.map_err(|error| match error {
                EngineError::NotFound(_) => format!("{method}: no product {id}"),
                other => fail(other),
            })?;
            Ok(json!({"deleted": true}))
        }
        "Products.search" => {
            let text = args.text(0, "query")?;
            let limit = args.whole(1, "limit", 5)? as usize;
            let hits =
                engine.product_search(agent_id, &text, limit, DEFAULT_PRODUCT_SCORE_THRESHOLD).await.map_err(fail)?;
            Ok(product_list_answer(hits.iter().map(|hit| product_view(&hit.item)).collect(), None))
        }
        other => {
            let family = other.split('.').next().unwrap_or(other);
            Err(format!("{other} is not a method of {family}"))
        }
    }
}

fn not_found_entry(args: &Arguments<'_>, error: EngineError, collection: &str, id: &str) -> String {
    match error {
        EngineError::NotFound(_) => format!("{}: no entry {id} in collection {collection}", args.method),
        other => args.fail(other),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn collection_names_are_checked() {
        for good in ["tickets", "a", "A_b-9", &"x".repeat(64)] {
            assert!(validate_collection(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_collection(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pagination_speaks_both_dialects() {
        let view = pagination_view(2, 10, 25);
        assert_eq!(
            view,
            json!({"page": 2, "limit": 10, "total": 25, "totalPages": 3, "currentPage": 2, "totalCount": 25,
                   "hasNextPage": true, "hasPrevPage": true, "nextPage": 3, "prevPage": 1})
        );
        assert_eq!(pagination_view(1, 10, 0)["nextPage"], Value::Null);
    }

    #[test]
    fn search_options_and_patches_parse() {
        assert_eq!(parse_search_option(Some(&json!("t"))), Ok(Some("t".into())));
        assert_eq!(
            parse_search_option(Some(&json!({"searchText": "t", "index": ["a", ["b", "c"]]}))),
            Ok(Some("t".into()))
        );
        assert_eq!(parse_search_option(Some(&json!({"index": "a"}))).map_err(|error| error.field), Err("index".into()));
        assert_eq!(parse_search_option(Some(&json!(3))).map_err(|error| error.field), Err("searchText".into()));
        let (change, text) = parse_patch(&json!({"set": {"a": 1}, "unset": ["b"], "searchText": null})).expect("patch");
        assert_eq!(
            change,
            ObjectChange::Merge {
                set: json!({"a": 1}).as_object().cloned().unwrap_or_default(),
                unset: vec!["b".into()]
            }
        );
        assert_eq!(text, SearchTextChange::Clear);
        assert!(parse_patch(&json!({"unset": "b"})).is_err());
    }

    #[test]
    fn whole_numbers_come_from_js_numbers() {
        assert_eq!(whole(None, 7), Some(7));
        assert_eq!(whole(Some(&json!(2.0)), 7), Some(2));
        assert_eq!(whole(Some(&json!(2.5)), 7), None);
        assert_eq!(whole(Some(&json!(0)), 7), None);
        assert_eq!(whole(Some(&json!("2")), 7), None);
    }

    #[test]
    fn product_ids_and_fields_are_checked() {
        assert!(validate_product_id("sku-1").is_ok());
        assert!(validate_product_id("search").is_err());
        assert!(validate_product_id("a/b").is_err());
        assert_eq!(product_fields(&json!({"price": 1})).map_err(|error| error.field), Err("name".into()));
        assert_eq!(
            product_fields(&json!({"name": "x", "price": "1"})).map_err(|error| error.field),
            Err("price".into())
        );
        let fields = product_fields(&json!({"id": "p", "name": "x"})).expect("fields");
        assert!(!fields.contains_key("id"));
    }
}
