//! HTTP routes of the agent's `Data` collections and `Products`: lua-cli's paths and the native `/v1` ones.
//!
//! lua-cli's routes (reference: lua-cli 3.37.0, `custom.data.api.service.ts` and `products.api.service.ts`) answer in
//! its envelope, shaped so that what its client unwraps is what its types say: `GET …/custom-data/{collection}`
//! answers `{success, data: {data: [entry], pagination}}` (`Data.get` returns `response.data`), `…/search` answers
//! `{success, data: {data: [entry]}}` (`Data.search` maps `response.data.data`), and the product listings answer
//! `{success, data: [product], pagination}` at the top level (the client wraps the whole response).
//!
//! Data collections hold the agent's private records, so they need an agent key (a user token gets 403); a user token
//! may read the product catalog. Another agent's collections and products answer 404, as if they did not exist.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sundial_core::{FieldError, JsonObject};
use sundial_scheduler::data::{
    collection_view, entry_view, pagination_view, parse_patch, parse_search_option, product_view, scored_entry_view,
    DEFAULT_DATA_SCORE_THRESHOLD, DEFAULT_PRODUCT_SCORE_THRESHOLD,
};
use sundial_scheduler::EngineError;
use sundial_store::data::{ObjectChange, SearchTextChange};

use crate::auth::Principal;
use crate::contract;
use crate::error::{ApiError, ApiResult};
use crate::lua::{ok, ok_status};
use crate::{AppState, Body, JsonBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type Params = Query<HashMap<String, String>>;

/// The native routes for Data and Products, each registered with its description.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(collections))
        .routes(routes!(list, create))
        .routes(routes!(search))
        .routes(routes!(entry, replace, patch, delete))
        .routes(routes!(products, product_create))
        .routes(routes!(product_search))
        .routes(routes!(product, product_replace, product_patch, product_delete))
}

/// lua-cli's routes for Data and Products (described by its wire protocol, not by `/v1/openapi.json`).
pub(crate) fn lua_routes() -> Router<AppState> {
    Router::new()
        .route("/developer/agents/{agent_id}/custom-data", get(lua_collections))
        .route("/developer/agents/{agent_id}/custom-data/{collection}", get(lua_list).post(lua_create))
        .route("/developer/agents/{agent_id}/custom-data/{collection}/search", get(lua_search))
        .route(
            "/developer/agents/{agent_id}/custom-data/{collection}/{entry_id}",
            get(lua_entry).put(lua_update).patch(lua_patch).delete(lua_delete),
        )
        .route(
            "/developer/agents/{agent_id}/products",
            get(lua_products).post(lua_product_create).put(lua_product_update),
        )
        .route("/developer/agents/{agent_id}/products/search", get(lua_product_search))
        .route("/developer/agents/{agent_id}/products/{product_id}", get(lua_product).delete(lua_product_delete))
}

// --- shared ---

/// The agent whose data collections or products the request reaches: another agent's answer 404. A user token may
/// use them, like a tool running for its user, unless it was minted without the `data` or `products` scope (checked
/// with the credential, see `auth`).
async fn data_agent(state: &AppState, principal: &Principal, agent_id: &str) -> ApiResult<String> {
    Ok(principal.caller_for(state, agent_id).await?.agent_id)
}

/// Engine errors with the codes of this resource: `entry_not_found`, `product_not_found`.
fn api_error(error: EngineError) -> ApiError {
    match error {
        EngineError::NotFound("entry") => ApiError::new(StatusCode::NOT_FOUND, "entry_not_found", "entry not found"),
        EngineError::NotFound("product") => {
            ApiError::new(StatusCode::NOT_FOUND, "product_not_found", "product not found")
        }
        other => other.into(),
    }
}

/// A whole number query parameter of at least 1.
fn whole_param(params: &HashMap<String, String>, name: &str, default: u64) -> ApiResult<u64> {
    let Some(text) = params.get(name) else {
        return Ok(default);
    };
    match text.trim().parse::<f64>() {
        Ok(number) if number >= 1.0 && number.fract() == 0.0 && number <= 1e15 => Ok(number as u64),
        _ => Err(FieldError::new(name, "must be a whole number of at least 1").into()),
    }
}

fn number_param(params: &HashMap<String, String>, name: &str, default: f64) -> ApiResult<f64> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(number),
            _ => Err(FieldError::new(name, "must be a number").into()),
        },
    }
}

/// The first of `names` that is present.
fn text_param<'a>(params: &'a HashMap<String, String>, names: &[&str]) -> ApiResult<&'a str> {
    names
        .iter()
        .find_map(|name| params.get(*name))
        .map(String::as_str)
        .ok_or_else(|| FieldError::new(names[0], "is required").into())
}

/// `filter`: a JSON filter (lua-cli's `LuaQuery`), URL-encoded.
fn filter_param(params: &HashMap<String, String>) -> ApiResult<Option<Value>> {
    match params.get("filter").filter(|text| !text.trim().is_empty()) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|error| FieldError::new("filter", format!("must be JSON: {error}")).into()),
    }
}

fn object_body(body: &Value) -> ApiResult<&JsonObject> {
    body.as_object().ok_or_else(|| FieldError::new("body", "must be a JSON object").into())
}

/// The `data` field of a create or update body.
fn data_field(body: &JsonObject) -> ApiResult<&Value> {
    match body.get("data") {
        Some(data @ Value::Object(_)) => Ok(data),
        _ => Err(FieldError::new("data", "is required and must be a JSON object").into()),
    }
}

/// `{status, message}` of lua-cli's update and delete answers, with the entry's fields when there is one.
fn status_answer(message: String, entry: Option<Value>) -> Value {
    let mut answer = entry.unwrap_or_else(|| json!({}));
    answer["status"] = json!("success");
    answer["message"] = json!(message);
    answer
}

async fn list_entries(
    state: &AppState,
    agent_id: &str,
    collection: &str,
    params: &HashMap<String, String>,
) -> ApiResult<(Vec<Value>, Value)> {
    let page = whole_param(params, "page", 1)?;
    let limit = whole_param(params, "limit", 10)?.min(usize::MAX as u64) as usize;
    let filter = filter_param(params)?;
    let found = state.engine.data_list(agent_id, collection, filter.as_ref(), page, limit).await.map_err(api_error)?;
    Ok((found.items.iter().map(entry_view).collect(), pagination_view(page, limit, found.total)))
}

async fn search_entries(
    state: &AppState,
    agent_id: &str,
    collection: &str,
    params: &HashMap<String, String>,
    names: &[&str],
) -> ApiResult<Vec<Value>> {
    let text = text_param(params, names)?;
    let limit = whole_param(params, "limit", 10)?.min(usize::MAX as u64) as usize;
    let threshold = number_param(params, "scoreThreshold", DEFAULT_DATA_SCORE_THRESHOLD)?;
    let hits = state.engine.data_search(agent_id, collection, text, limit, threshold).await.map_err(api_error)?;
    Ok(hits.iter().map(scored_entry_view).collect())
}

async fn list_products(
    state: &AppState,
    agent_id: &str,
    params: &HashMap<String, String>,
) -> ApiResult<(Vec<Value>, Value)> {
    let page = whole_param(params, "page", 1)?;
    let limit = whole_param(params, "limit", 10)?.min(usize::MAX as u64) as usize;
    let filter = filter_param(params)?;
    let found = state.engine.product_list(agent_id, filter.as_ref(), page, limit).await.map_err(api_error)?;
    Ok((found.items.iter().map(product_view).collect(), pagination_view(page, limit, found.total)))
}

/// Lua-cli's routes take the search text under any of its names; the native route under the one it documents.
const LUA_PRODUCT_QUERY: &[&str] = &["searchQuery", "query", "q"];
const LUA_ENTRY_TEXT: &[&str] = &["searchText", "text", "q"];

async fn search_products(
    state: &AppState,
    agent_id: &str,
    params: &HashMap<String, String>,
    names: &[&str],
) -> ApiResult<Vec<Value>> {
    let text = text_param(params, names)?;
    let limit = whole_param(params, "limit", 5)?.min(usize::MAX as u64) as usize;
    let threshold = number_param(params, "scoreThreshold", DEFAULT_PRODUCT_SCORE_THRESHOLD)?;
    let hits = state.engine.product_search(agent_id, text, limit, threshold).await.map_err(api_error)?;
    Ok(hits.iter().map(|hit| product_view(&hit.item)).collect())
}

// --- lua-cli: custom data ---

async fn lua_collections(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let collections = state.engine.data_collections(&agent_id).await.map_err(api_error)?;
    let views: Vec<Value> = collections.iter().map(collection_view).collect();
    Ok(ok(json!({"count": views.len(), "data": views})))
}

async fn lua_create(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let body = object_body(&body)?;
    let search_text = parse_search_option(Some(&Value::Object(body.clone())))?;
    data_field(body)?;
    contract::conform::<contract::CreateEntry>(&Value::Object(body.clone()))?;
    let entry = state
        .engine
        .data_create(&agent_id, &collection, data_field(body)?, search_text.as_deref())
        .await
        .map_err(api_error)?;
    Ok(ok_status(StatusCode::CREATED, entry_view(&entry)))
}

async fn lua_list(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let (entries, pagination) = list_entries(&state, &agent_id, &collection, &params).await?;
    Ok(ok(json!({"data": entries, "pagination": pagination})))
}

async fn lua_search(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let hits = search_entries(&state, &agent_id, &collection, &params, LUA_ENTRY_TEXT).await?;
    Ok(ok(json!({ "data": hits })))
}

async fn lua_entry(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let entry = state.engine.data_entry(&agent_id, &collection, &entry_id).await.map_err(api_error)?;
    let entry = entry.ok_or_else(|| api_error(EngineError::NotFound("entry")))?;
    Ok(ok(entry_view(&entry)))
}

/// lua-cli's `Data.update`: the body's `data` fields are merged into the entry's (as `DataEntryInstance.update` does
/// locally); a `searchText` replaces the old one.
async fn lua_update(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let body = object_body(&body)?;
    let set = data_field(body)?.as_object().cloned().unwrap_or_default();
    let search_text = match parse_search_option(Some(&Value::Object(body.clone())))? {
        Some(text) => SearchTextChange::Set(text),
        None => SearchTextChange::Keep,
    };
    let change = ObjectChange::Merge { set, unset: Vec::new() };
    let entry =
        state.engine.data_update(&agent_id, &collection, &entry_id, change, search_text).await.map_err(api_error)?;
    Ok(ok(status_answer(format!("entry {entry_id} updated"), Some(entry_view(&entry)))))
}

async fn lua_patch(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let (change, search_text) = parse_patch(&body)?;
    contract::conform::<contract::PatchEntry>(&body)?;
    let entry =
        state.engine.data_update(&agent_id, &collection, &entry_id, change, search_text).await.map_err(api_error)?;
    Ok(ok(status_answer(format!("entry {entry_id} updated"), Some(entry_view(&entry)))))
}

async fn lua_delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    state.engine.data_delete(&agent_id, &collection, &entry_id).await.map_err(api_error)?;
    Ok(ok(status_answer(format!("entry {entry_id} deleted"), None)))
}

// --- lua-cli: products ---

/// `{success, data: [product], pagination}` at the top level: lua-cli's `Products.get` wraps the whole response.
async fn lua_products(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let (products, pagination) = list_products(&state, &agent_id, &params).await?;
    Ok(Json(json!({"success": true, "data": products, "pagination": pagination})).into_response())
}

async fn lua_product_create(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    sundial_scheduler::data::check_product(&body, true)?;
    contract::conform::<contract::ProductInput>(&body)?;
    let product = state.engine.product_create(&agent_id, &body).await.map_err(api_error)?;
    Ok(ok_status(StatusCode::CREATED, json!({ "product": product_view(&product) })))
}

/// lua-cli's `Products.update(fields, id)`: `PUT …/products` with `{...fields, id}`; a partial update (merge).
async fn lua_product_update(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let mut set = object_body(&body)?.clone();
    let Some(Value::String(id)) = set.remove("id") else {
        return Err(FieldError::new("id", "is required and must be a string").into());
    };
    let change = ObjectChange::Merge { set, unset: Vec::new() };
    let product = state.engine.product_update(&agent_id, &id, change).await.map_err(api_error)?;
    Ok(ok(json!({"updated": true, "product": product_view(&product)})))
}

/// `{success, message, data: [product]}` at the top level, as lua-cli's `SearchProductsResponse`.
async fn lua_product_search(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let products = search_products(&state, &agent_id, &params, LUA_PRODUCT_QUERY).await?;
    let message = format!("{} products found", products.len());
    Ok(Json(json!({"success": true, "message": message, "data": products})).into_response())
}

async fn lua_product(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, product_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let product = state.engine.product(&agent_id, &product_id).await.map_err(api_error)?;
    let product = product.ok_or_else(|| api_error(EngineError::NotFound("product")))?;
    Ok(ok(product_view(&product)))
}

async fn lua_product_delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, product_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    state.engine.product_delete(&agent_id, &product_id).await.map_err(api_error)?;
    Ok(ok(json!({"deleted": true})))
}

// --- native: data ---

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/data",
    operation_id = "collections",
    tag = "data",
    summary = "The agent's data collections",
    params(contract::AgentPath),
    responses((status = 200, description = "the collections", body = contract::Collections))
)]
async fn collections(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let collections = state.engine.data_collections(&agent_id).await.map_err(api_error)?;
    Ok(Json(json!({ "collections": collections.iter().map(collection_view).collect::<Vec<_>>() })))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/data/{collection}",
    operation_id = "create",
    tag = "data",
    summary = "Add an entry (the collection is made with its first entry)",
    params(contract::CollectionPath),
    request_body = contract::CreateEntry,
    responses((status = 201, description = "the entry", body = contract::Entry, links(("entry" = (operation_id = "entry", parameters(("agentId" = "$request.path.agentId"), ("collection" = "$request.path.collection"), ("entryId" = "$response.body#/id")))), ("patch" = (operation_id = "patch", parameters(("agentId" = "$request.path.agentId"), ("collection" = "$request.path.collection"), ("entryId" = "$response.body#/id")))))))
)]
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let body = object_body(&body)?;
    let search_text = parse_search_option(Some(&Value::Object(body.clone())))?;
    let entry = state
        .engine
        .data_create(&agent_id, &collection, data_field(body)?, search_text.as_deref())
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(entry_view(&entry))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/data/{collection}",
    operation_id = "list",
    tag = "data",
    summary = "A collection's entries",
    params(contract::CollectionPath, contract::PageQuery),
    responses((status = 200, description = "a page of entries", body = contract::EntryPage))
)]
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let (entries, pagination) = list_entries(&state, &agent_id, &collection, &params).await?;
    Ok(Json(json!({"entries": entries, "pagination": pagination})))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/data/{collection}/search",
    operation_id = "search",
    tag = "data",
    summary = "Full-text search of a collection, ranked",
    params(contract::CollectionPath, contract::SearchQuery),
    responses((status = 200, description = "the entries found, best first", body = contract::EntryHits))
)]
async fn search(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection)): Path<(String, String)>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let hits = search_entries(&state, &agent_id, &collection, &params, &["text"]).await?;
    Ok(Json(json!({ "entries": hits })))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/data/{collection}/{entryId}",
    operation_id = "entry",
    tag = "data",
    summary = "One entry",
    params(contract::EntryPath),
    responses((status = 200, description = "the entry", body = contract::Entry))
)]
async fn entry(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let entry = state.engine.data_entry(&agent_id, &collection, &entry_id).await.map_err(api_error)?;
    let entry = entry.ok_or_else(|| api_error(EngineError::NotFound("entry")))?;
    Ok(Json(entry_view(&entry)))
}

/// `PUT`: the entry becomes `{data, searchText?}` (without `searchText`, search indexes the data's values again).
#[utoipa::path(
    put,
    path = "/v1/agents/{agentId}/data/{collection}/{entryId}",
    operation_id = "replace",
    tag = "data",
    summary = "Replace an entry",
    params(contract::EntryPath),
    request_body = contract::CreateEntry,
    responses((status = 200, description = "the entry now", body = contract::Entry))
)]
async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let body = object_body(&body)?;
    let data = data_field(body)?.as_object().cloned().unwrap_or_default();
    let search_text = match parse_search_option(Some(&Value::Object(body.clone())))? {
        Some(text) => SearchTextChange::Set(text),
        None => SearchTextChange::Clear,
    };
    contract::conform::<contract::CreateEntry>(&Value::Object(body.clone()))?;
    let change = ObjectChange::Replace(data);
    let entry =
        state.engine.data_update(&agent_id, &collection, &entry_id, change, search_text).await.map_err(api_error)?;
    Ok(Json(entry_view(&entry)))
}

/// `PATCH` with `{set?, unset?, searchText?}`.
#[utoipa::path(
    patch,
    path = "/v1/agents/{agentId}/data/{collection}/{entryId}",
    operation_id = "patch",
    tag = "data",
    summary = "Change fields of an entry",
    params(contract::EntryPath),
    request_body = contract::PatchEntry,
    responses((status = 200, description = "the entry now", body = contract::Entry))
)]
async fn patch(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let (change, search_text) = parse_patch(&body)?;
    let entry =
        state.engine.data_update(&agent_id, &collection, &entry_id, change, search_text).await.map_err(api_error)?;
    Ok(Json(entry_view(&entry)))
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{agentId}/data/{collection}/{entryId}",
    operation_id = "delete",
    tag = "data",
    summary = "Delete an entry",
    params(contract::EntryPath),
    responses((status = 200, description = "the entry is gone", body = contract::Deleted))
)]
async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, collection, entry_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    state.engine.data_delete(&agent_id, &collection, &entry_id).await.map_err(api_error)?;
    Ok(Json(json!({"deleted": true, "id": entry_id})))
}

// --- native: products ---

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/products",
    operation_id = "products",
    tag = "products",
    summary = "The agent's products",
    params(contract::AgentPath, contract::PageQuery),
    responses((status = 200, description = "a page of products", body = contract::ProductPage))
)]
async fn products(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let (products, pagination) = list_products(&state, &agent_id, &params).await?;
    Ok(Json(json!({"products": products, "pagination": pagination})))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{agentId}/products",
    operation_id = "product_create",
    tag = "products",
    summary = "Add a product (its `id` is kept when given)",
    params(contract::AgentPath),
    request_body = contract::ProductInput,
    responses((status = 201, description = "the product", body = contract::Product, links(("product" = (operation_id = "product", parameters(("agentId" = "$request.path.agentId"), ("productId" = "$response.body#/id")))), ("product_patch" = (operation_id = "product_patch", parameters(("agentId" = "$request.path.agentId"), ("productId" = "$response.body#/id")))))))
)]
async fn product_create(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Body(body): Body,
) -> ApiResult<Response> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let product = state.engine.product_create(&agent_id, &body).await.map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(product_view(&product))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/products/search",
    operation_id = "product_search",
    tag = "products",
    summary = "Search products",
    params(contract::AgentPath, contract::ProductSearchQuery),
    responses((status = 200, description = "the products found, best first", body = contract::ProductHits))
)]
async fn product_search(
    State(state): State<AppState>,
    principal: Principal,
    Path(agent_id): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    Ok(Json(json!({ "products": search_products(&state, &agent_id, &params, &["query"]).await? })))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{agentId}/products/{productId}",
    operation_id = "product",
    tag = "products",
    summary = "One product",
    params(contract::ProductPath),
    responses((status = 200, description = "the product", body = contract::Product))
)]
async fn product(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, product_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    let product = state.engine.product(&agent_id, &product_id).await.map_err(api_error)?;
    let product = product.ok_or_else(|| api_error(EngineError::NotFound("product")))?;
    Ok(Json(product_view(&product)))
}

/// `PUT`: the product's fields become the body's (its `id` stays).
#[utoipa::path(
    put,
    path = "/v1/agents/{agentId}/products/{productId}",
    operation_id = "product_replace",
    tag = "products",
    summary = "Replace a product's fields",
    params(contract::ProductPath),
    request_body = contract::ProductFields,
    responses((status = 200, description = "the product now", body = contract::Product))
)]
async fn product_replace(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, product_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    sundial_scheduler::data::check_product(&body, false)?;
    contract::conform::<contract::ProductFields>(&body)?;
    let change = ObjectChange::Replace(object_body(&body)?.clone());
    let product = state.engine.product_update(&agent_id, &product_id, change).await.map_err(api_error)?;
    Ok(Json(product_view(&product)))
}

/// `PATCH`: the body's fields are merged into the product's.
#[utoipa::path(
    patch,
    path = "/v1/agents/{agentId}/products/{productId}",
    operation_id = "product_patch",
    tag = "products",
    summary = "Merge fields into a product",
    params(contract::ProductPath),
    request_body = contract::ProductPatch,
    responses((status = 200, description = "the product now", body = contract::Product))
)]
async fn product_patch(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, product_id)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    object_body(&body)?;
    contract::conform::<contract::ProductPatch>(&body)?;
    let change = ObjectChange::Merge { set: object_body(&body)?.clone(), unset: Vec::new() };
    let product = state.engine.product_update(&agent_id, &product_id, change).await.map_err(api_error)?;
    Ok(Json(product_view(&product)))
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{agentId}/products/{productId}",
    operation_id = "product_delete",
    tag = "products",
    summary = "Delete a product",
    params(contract::ProductPath),
    responses((status = 200, description = "the product is gone", body = contract::Deleted))
)]
async fn product_delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((agent_id, product_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let agent_id = data_agent(&state, &principal, &agent_id).await?;
    state.engine.product_delete(&agent_id, &product_id).await.map_err(api_error)?;
    Ok(Json(json!({"deleted": true, "id": product_id})))
}
