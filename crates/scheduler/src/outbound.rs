//! Outbound HTTP: webhook delivery of users' messages (with retries, each message delivered once) and the `fetch`
//! of job code, which reaches only hosts on the agent's allow-list and never a private address.
//!
//! `fetch` resolves the host itself, refuses the request unless every resolved address is public, and pins the
//! connection to a checked address, so DNS rebinding cannot slip a private address in between check and connect.
//! Redirects are followed by hand, each hop checked again; proxies from the environment are ignored; bodies capped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration as StdDuration;

use chrono::Duration;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sundial_store::{Delivery, DeliveryOutcome};
use tokio::sync::watch;

use crate::engine::Engine;

/// Largest response body `fetch` reads.
pub const MAX_FETCH_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Largest request body `fetch` sends.
const MAX_FETCH_REQUEST_BYTES: usize = 1024 * 1024;
/// Redirects `fetch` follows.
const MAX_REDIRECTS: usize = 5;
/// Attempts of one webhook delivery before it is given up.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 10;

/// Installs the TLS crypto provider (ring) once per process; every process that builds an HTTP client calls it
/// first (the server, the CLI, tests).
pub fn tls_ready() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether an address is publicly routable: not loopback, private, link-local (cloud metadata included), CGNAT,
/// unique-local, multicast, unspecified, documentation/benchmark ranges, nor an IPv4 address wrapped in IPv6.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address wrapped in IPv6 is refused whatever it is: the wrapped form is a classic filter bypass.
            if v6.to_ipv4_mapped().is_some() {
                return false;
            }
            let segments = v6.segments();
            let unique_local = segments[0] & 0xfe00 == 0xfc00;
            let link_local = segments[0] & 0xffc0 == 0xfe80;
            let documentation = segments[0] == 0x2001 && segments[1] == 0x0db8;
            let nat64 = segments[0] == 0x0064 && segments[1] == 0xff9b;
            let six_to_four = segments[0] == 0x2002;
            let teredo = segments[0] == 0x2001 && segments[1] == 0;
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || unique_local
                || link_local
                || documentation
                || nat64
                || six_to_four
                || teredo
                || v6 == Ipv6Addr::UNSPECIFIED
                || v6.to_ipv4().is_some_and(|v4| !is_public_v4(v4)))
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    let cgnat = a == 100 && (64..128).contains(&b);
    let benchmark = a == 198 && (b == 18 || b == 19);
    let documentation =
        (a == 192 && b == 0 && c == 2) || (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113);
    let protocol_assignments = a == 192 && b == 0 && c == 0;
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_unspecified()
        || a == 0
        || a >= 240
        || cgnat
        || benchmark
        || documentation
        || protocol_assignments)
}

/// Whether `host` matches an allow-list entry: an exact host name, or `*.example.com` for its subdomains.
pub fn host_allowed(host: &str, allow_list: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allow_list.iter().any(|entry| {
        let entry = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == entry,
        }
    })
}

/// The agent's fetch allow-list from its settings.
fn allow_list(settings: &sundial_core::JsonObject) -> Vec<String> {
    settings
        .get("fetchAllowList")
        .and_then(Value::as_array)
        .map(|entries| entries.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Resolves `host:port` and answers one address, refusing the whole host if any address is not public.
async fn checked_address(host: &str, port: u16) -> Result<SocketAddr, String> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| format!("fetch: cannot resolve {host}: {error}"))?
            .collect(),
    };
    if addresses.is_empty() {
        return Err(format!("fetch: {host} has no address"));
    }
    if let Some(private) = addresses.iter().find(|address| !is_public(address.ip())) {
        return Err(format!("fetch: {host} resolves to {}, which is not a public address", private.ip()));
    }
    Ok(addresses[0])
}

/// A `fetch(url, init)` call as job code made it.
#[derive(Debug, Default, PartialEq)]
struct FetchRequest {
    url: String,
    method: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

/// Reads `fetch(url, init)` arguments: `{args: [url, {method, headers, body}]}`.
fn fetch_request(args: &Value) -> Result<FetchRequest, String> {
    let list = args.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
    let url = match list.first() {
        Some(Value::String(url)) => url.clone(),
        Some(Value::Object(request)) => request.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
        _ => return Err("fetch: the first argument must be a URL string".into()),
    };
    let init = list.get(1).cloned().unwrap_or(Value::Null);
    let method = init.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
    let mut headers = Vec::new();
    match init.get("headers") {
        Some(Value::Object(map)) => {
            for (name, value) in map {
                headers.push((name.clone(), value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())));
            }
        }
        Some(Value::Array(pairs)) => {
            for pair in pairs {
                if let (Some(name), Some(value)) =
                    (pair.get(0).and_then(Value::as_str), pair.get(1).and_then(Value::as_str))
                {
                    headers.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        _ => {}
    }
    let body = match init.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    };
    if body.as_ref().is_some_and(|body| body.len() > MAX_FETCH_REQUEST_BYTES) {
        return Err(format!("fetch: request body larger than {MAX_FETCH_REQUEST_BYTES} bytes"));
    }
    Ok(FetchRequest { url, method, headers, body })
}

impl Engine {
    /// Runs a `fetch` of job code for `agent_id` (SPEC §5): allow-listed hosts only, public addresses only, every
    /// redirect hop checked, bodies capped. Answers `{url, status, statusText, headers: [[name, value]…], body,
    /// redirected}` with the body as text.
    pub(crate) async fn fetch(&self, agent_id: &str, args: &Value) -> Result<Value, String> {
        tls_ready();
        let FetchRequest { url: mut url_text, mut method, headers, mut body } = fetch_request(args)?;
        let agent = self.store().agent_get(agent_id).await.map_err(|error| error.to_string())?;
        let allowed = agent.map(|agent| allow_list(&agent.settings)).unwrap_or_default();
        let mut redirected = false;
        for _ in 0..=MAX_REDIRECTS {
            let url =
                reqwest::Url::parse(&url_text).map_err(|error| format!("fetch: invalid URL {url_text:?}: {error}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("fetch: only http and https URLs are allowed, not {}", url.scheme()));
            }
            let host = url.host_str().ok_or_else(|| format!("fetch: {url_text} has no host"))?.to_owned();
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            if !host_allowed(&host, &allowed) {
                return Err(format!("fetch: host {host} is not on this agent's allow-list"));
            }
            let port = url.port_or_known_default().unwrap_or(443);
            let address = checked_address(&host, port).await?;
            let client = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .resolve(&host, address)
                .timeout(StdDuration::from_secs(30))
                .build()
                .map_err(|error| format!("fetch: {error}"))?;
            let method_value = reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("fetch: invalid method {method}"))?;
            let mut request = client.request(method_value, url.clone());
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let response = request.send().await.map_err(|error| format!("fetch: {url}: {error}"))?;
            let status = response.status();
            if status.is_redirection() {
                if let Some(location) =
                    response.headers().get(reqwest::header::LOCATION).and_then(|value| value.to_str().ok())
                {
                    url_text = url.join(location).map_err(|error| format!("fetch: bad redirect: {error}"))?.to_string();
                    redirected = true;
                    if status == reqwest::StatusCode::SEE_OTHER
                        || ((status == reqwest::StatusCode::MOVED_PERMANENTLY || status == reqwest::StatusCode::FOUND)
                            && method == "POST")
                    {
                        method = "GET".into();
                        body = None;
                    }
                    continue;
                }
            }
            let response_headers: Vec<Value> = response
                .headers()
                .iter()
                .map(|(name, value)| json!([name.as_str(), value.to_str().unwrap_or_default()]))
                .collect();
            let final_url = response.url().to_string();
            let mut stream = response.bytes_stream();
            let mut bytes = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| format!("fetch: reading the body failed: {error}"))?;
                if bytes.len() + chunk.len() > MAX_FETCH_BODY_BYTES {
                    return Err(format!("fetch: response body larger than {MAX_FETCH_BODY_BYTES} bytes"));
                }
                bytes.extend_from_slice(&chunk);
            }
            return Ok(json!({
                "url": final_url,
                "status": status.as_u16(),
                "statusText": status.canonical_reason().unwrap_or_default(),
                "headers": response_headers,
                "body": String::from_utf8_lossy(&bytes),
                "redirected": redirected,
            }));
        }
        Err(format!("fetch: more than {MAX_REDIRECTS} redirects"))
    }
}

/// The body a webhook receiver gets for one message.
pub fn delivery_body(delivery: &Delivery) -> Value {
    let message = &delivery.message;
    json!({
        "type": "message",
        "messageId": message.id,
        "agentId": message.agent_id,
        "userId": message.user_id,
        "jobId": message.job_id,
        "executionId": message.execution_id,
        "occurrenceId": message.occurrence_id,
        "seq": message.seq,
        "message": message.content,
        "createdAt": sundial_core::wire::instant(message.created_at),
    })
}

/// The wait before delivery attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 minutes.
fn delivery_backoff(attempts: u32) -> Duration {
    Duration::seconds((1i64 << attempts.min(9)).min(300))
}

/// Delivers pending webhook messages until stopped: claims due deliveries, POSTs each once per attempt, and records
/// the outcome. A receiver gets `X-Sundial-Message-Id` to recognise a repeat should an answer be lost.
pub(crate) async fn deliver_webhooks(engine: Engine, mut stopped: watch::Receiver<bool>) {
    tls_ready();
    let client = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(StdDuration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook client; webhooks are not delivered");
            return;
        }
    };
    let mut messages = engine.subscribe_messages();
    loop {
        let now = engine.now();
        let lease_until = now + Duration::seconds(60);
        let deliveries = engine.store().deliveries_claim(now, &engine.config().node_id, lease_until, 100).await;
        let deliveries = deliveries.unwrap_or_else(|error| {
            tracing::error!(%error, "cannot claim webhook deliveries");
            Vec::new()
        });
        let full = deliveries.len() == 100;
        let mut in_flight = futures_util::stream::iter(deliveries.into_iter().map(|delivery| {
            let client = client.clone();
            let engine = engine.clone();
            async move {
                let outcome = match client
                    .post(&delivery.url)
                    .header("X-Sundial-Message-Id", &delivery.message.id)
                    .json(&delivery_body(&delivery))
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => DeliveryOutcome::Delivered,
                    Ok(response) => failure(&engine, &delivery, format!("HTTP {}", response.status().as_u16())),
                    Err(error) => failure(&engine, &delivery, error.to_string()),
                };
                if let Err(error) = engine.store().delivery_finish(&delivery.message.id, &outcome, engine.now()).await {
                    tracing::error!(%error, "cannot record a webhook delivery");
                }
            }
        }))
        .buffer_unordered(16);
        while in_flight.next().await.is_some() {}
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(StdDuration::from_millis(500)) => {}
            _ = messages.recv() => {}
            _ = stopped.changed() => return,
        }
    }
}

fn failure(engine: &Engine, delivery: &Delivery, error: String) -> DeliveryOutcome {
    if delivery.attempts + 1 >= MAX_DELIVERY_ATTEMPTS {
        tracing::warn!(message = %delivery.message.id, %error, "webhook delivery failed for good");
        DeliveryOutcome::Failed { error }
    } else {
        DeliveryOutcome::Retry { at: engine.now() + delivery_backoff(delivery.attempts), error }
    }
}

/// Validates agent settings (`{webhookUrl?, fetchAllowList?, maxActiveJobsPerUser?, minRecurringIntervalSeconds?}`).
pub fn validate_settings(settings: &sundial_core::JsonObject) -> Result<(), sundial_core::FieldError> {
    use sundial_core::FieldError;
    for (key, value) in settings {
        match key.as_str() {
            "webhookUrl" if value.is_null() => {}
            "webhookUrl" => {
                let url = value.as_str().ok_or_else(|| FieldError::new("webhookUrl", "must be a string"))?;
                let parsed = reqwest::Url::parse(url)
                    .map_err(|error| FieldError::new("webhookUrl", format!("must be a URL: {error}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(FieldError::new("webhookUrl", "must be an http or https URL"));
                }
            }
            "fetchAllowList" if value.is_null() => {}
            "fetchAllowList" => {
                let ok = value.as_array().is_some_and(|entries| {
                    entries
                        .iter()
                        .all(|entry| entry.as_str().is_some_and(|host| !host.is_empty() && !host.contains('/')))
                });
                if !ok {
                    return Err(FieldError::new(
                        "fetchAllowList",
                        "must be an array of host names (`api.example.com`, `*.example.com`)",
                    ));
                }
            }
            "userJobEnv" if value.is_null() => {}
            "userJobEnv" => {
                let ok = value.as_array().is_some_and(|names| {
                    names.iter().all(|name| name.as_str().is_some_and(|name| !name.is_empty() && name.len() <= 200))
                });
                if !ok {
                    return Err(FieldError::new(
                        "userJobEnv",
                        "must be an array of variable names that jobs acting for a user may read with env(name)",
                    ));
                }
            }
            "maxActiveJobsPerUser" | "minRecurringIntervalSeconds" if value.is_null() => {}
            "maxActiveJobsPerUser" | "minRecurringIntervalSeconds" => {
                let max = if key == "maxActiveJobsPerUser" { 100_000 } else { 86_400 };
                if !sundial_core::wire::whole_number(value).is_some_and(|number| (1..=max).contains(&number)) {
                    return Err(FieldError::new(key.as_str(), format!("must be a whole number from 1 to {max}")));
                }
            }
            other => {
                return Err(FieldError::new(
                    other,
                    "is not a setting (webhookUrl, fetchAllowList, userJobEnv, maxActiveJobsPerUser, \
                     minRecurringIntervalSeconds)",
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "198.18.0.1",
        ];
        for address in refused {
            let ip: IpAddr = address.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_public(ip), "{address} passed");
        }
        for address in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "151.101.1.69"] {
            let ip: IpAddr = address.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(is_public(ip), "{address} refused");
        }
    }

    #[test]
    fn allow_list_matches_hosts_and_subdomains() {
        let list = vec!["api.example.com".to_owned(), "*.example.org".to_owned()];
        assert!(host_allowed("api.example.com", &list));
        assert!(host_allowed("API.example.com.", &list));
        assert!(host_allowed("a.b.example.org", &list));
        assert!(!host_allowed("example.org", &list));
        assert!(!host_allowed("evil-api.example.com", &list));
        assert!(!host_allowed("api.example.com.evil.net", &list));
        assert!(!host_allowed("localhost", &[]));
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<i64> = (0..12).map(|attempt| delivery_backoff(attempt).num_seconds()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn settings_are_validated_by_name() {
        let settings = |value: Value| value.as_object().cloned().unwrap_or_default();
        assert!(validate_settings(&settings(
            json!({"webhookUrl": "http://127.0.0.1:8080/hook", "fetchAllowList": ["a.com"]})
        ))
        .is_ok());
        let error =
            |value| validate_settings(&settings(value)).err().map(|error| error.to_string()).unwrap_or_default();
        assert!(error(json!({"webhookUrl": "ftp://x"})).starts_with("webhookUrl:"));
        assert!(error(json!({"fetchAllowList": "a.com"})).starts_with("fetchAllowList:"));
        assert!(error(json!({"colour": 1})).starts_with("colour:"));
    }

    #[test]
    fn fetch_arguments_are_read_like_the_web_api() {
        let args = json!({"args": ["https://a.com/x", {"method": "post", "headers": {"x-a": "1"}, "body": "{}"}]});
        let request = fetch_request(&args).unwrap_or_default();
        let expected = FetchRequest {
            url: "https://a.com/x".into(),
            method: "POST".into(),
            headers: vec![("x-a".into(), "1".into())],
            body: Some("{}".into()),
        };
        assert_eq!(request, expected);
    }
}
