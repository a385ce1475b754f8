//! The API's HTTP side: routing a path to a resource, content negotiation
//! (full objects or `PartialObjectMetadata`), get, paginated list and watch,
//! and `Status` bodies for what fails.

use super::events;
use super::select::Selector;
use super::store::{Change, Gone, Resource, Store};
use super::{Faults, Recorded, Shared};
use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A watch server times out after this when the client sets no
/// `timeoutSeconds` (kube-apiserver picks 30 to 60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("a response from a status and a JSON body")
}

/// A `meta.k8s.io/v1` Status, as the API reports a failure.
fn status_object(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_object(code, reason, message, None))
}

/// A request the API turns down before serving it: its Status.
struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn response(&self) -> Response<Body> {
        failure(self.code, self.reason, &self.message)
    }
}

fn gone_status(gone: &Gone) -> Value {
    let message = format!("too old resource version: {} ({})", gone.requested, gone.oldest);
    status_object(StatusCode::GONE, "Expired", &message, None)
}

/// Percent-decoding of one query component (`+` is a space in a form).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// What a path names: a collection (in one namespace or all), or one object.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
}

fn route(store: &Store, path: &str) -> Result<Target, Refusal> {
    let not_found = || Refusal {
        code: StatusCode::NOT_FOUND,
        reason: "NotFound",
        message: "the server could not find the requested resource".to_owned(),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, *plural, None),
        ["namespaces", namespace, plural] => (Some(*namespace), *plural, None),
        ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, Some(*name)),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return Err(not_found()),
    };
    let resource = store.find(group, version, plural).ok_or_else(not_found)?;
    // A cluster-scoped resource has no namespaced path; a namespaced one is
    // listed across namespaces, but not fetched by name without one.
    let namespaced = store.resource(resource).namespaced;
    if (namespace.is_some() && !namespaced) || (namespace.is_none() && name.is_some() && namespaced) {
        return Err(not_found());
    }
    Ok(Target { resource, namespace: namespace.map(str::to_owned), name: name.map(str::to_owned) })
}

/// The representation an `Accept` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Full,
    /// `meta.k8s.io/v1` PartialObjectMetadata (or its List).
    Metadata,
}

/// Pick the first acceptable media range. A list must be asked for as
/// `as=PartialObjectMetadataList`, one object (and each watch event) as
/// `as=PartialObjectMetadata`; the API refuses the other with 406.
fn negotiate(accept: Option<&str>, metadata_as: &str) -> Result<Shape, Refusal> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Shape::Full) };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !matches!(media, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let params: BTreeMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        match params.get("as") {
            None => return Ok(Shape::Full),
            Some(as_)
                if *as_ == metadata_as && params.get("g") == Some(&"meta.k8s.io") && params.get("v") == Some(&"v1") =>
            {
                return Ok(Shape::Metadata);
            }
            Some(_) => {}
        }
    }
    let message =
        format!("only application/json or application/json;as={metadata_as};g=meta.k8s.io;v=v1, not {accept}");
    Err(Refusal { code: StatusCode::NOT_ACCEPTABLE, reason: "NotAcceptable", message })
}

fn shaped(object: &Value, shape: Shape) -> Value {
    match shape {
        Shape::Full => object.clone(),
        Shape::Metadata => json!({
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"],
        }),
    }
}

/// Answer one request: record it, wait out the configured delay, check the
/// bearer token, then serve it.
pub async fn answer(
    shared: Arc<Shared>,
    faults: watch::Receiver<Faults>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    if faults.borrow().away.is_some() {
        // A request on a connection that is closing as the API goes away:
        // it is never answered (the connection's task drops it).
        std::future::pending::<()>().await;
    }
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let recorded = Recorded {
        method: request.method().to_string(),
        path: request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
        accept: header("accept"),
        authorization: header("authorization"),
    };
    shared.requests.lock().expect("requests lock").push(recorded.clone());
    let delay = faults.borrow().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if recorded.authorization.as_deref() != Some(format!("Bearer {}", shared.token).as_str()) {
        return failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if matches!(*request.method(), hyper::Method::POST | hyper::Method::PATCH) {
        return write(&shared, request).await;
    }
    if request.method() != hyper::Method::GET {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the stand-in API serves GET, and writes only Events",
        );
    }
    let target = match route(&shared.store.lock().expect("store lock"), request.uri().path()) {
        Ok(target) => target,
        Err(refusal) => return refusal.response(),
    };
    let query = query(request.uri());
    let selector = match Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    ) {
        Ok(selector) => selector,
        Err(bad) => {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", &format!("unable to parse requirement: {bad}"));
        }
    };
    let accept = recorded.accept.as_deref();
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        return match negotiate(accept, "PartialObjectMetadata") {
            Ok(shape) => start_watch(shared, faults, target, &query, selector, shape),
            Err(refusal) => refusal.response(),
        };
    }
    match &target.name {
        Some(name) => match negotiate(accept, "PartialObjectMetadata") {
            Ok(shape) => get(&shared.store.lock().expect("store lock"), &target, name, shape),
            Err(refusal) => refusal.response(),
        },
        None => match negotiate(accept, "PartialObjectMetadataList") {
            Ok(shape) => list(&shared.store.lock().expect("store lock"), &target, &query, &selector, shape),
            Err(refusal) => refusal.response(),
        },
    }
}

/// A POST (create) or merge PATCH of an `events.k8s.io/v1` Event, checked
/// as kube-apiserver checks one (events.rs); anything else is refused.
async fn write(shared: &Arc<Shared>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let target = match route(&shared.store.lock().expect("store lock"), parts.uri.path()) {
        Ok(target) => target,
        Err(refusal) => return refusal.response(),
    };
    let resource = shared.store.lock().expect("store lock").resource(target.resource).clone();
    let Some(namespace) = target.namespace.clone().filter(|_| {
        (resource.group.as_str(), resource.version.as_str()) == events::GROUP_VERSION
            && resource.plural == events::PLURAL
    }) else {
        let message = "the stand-in API writes only events.k8s.io/v1 Events, in a namespace";
        return failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message);
    };
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = match body.collect().await.map(|b| serde_json::from_slice::<Value>(&b.to_bytes())) {
        Ok(Ok(body)) if body.is_object() => body,
        _ => return failure(StatusCode::BAD_REQUEST, "BadRequest", "the body is not a JSON object"),
    };
    let invalid = |name: &str, invalid: Vec<String>| {
        let message = format!("Event.events.k8s.io \"{name}\" is invalid: {}", invalid.join(", "));
        failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message)
    };
    let mut store = shared.store.lock().expect("store lock");
    let (status, stored) = match (parts.method, target.name) {
        (hyper::Method::POST, None) => {
            let mut event = body;
            let name = event["metadata"]["name"].as_str().unwrap_or("").to_owned();
            if let Err(errors) = events::validate_create(&event, &namespace) {
                return invalid(&name, errors);
            }
            if store.get(target.resource, &namespace, &name).is_some() {
                let message = format!("events.events.k8s.io \"{name}\" already exists");
                return failure(StatusCode::CONFLICT, "AlreadyExists", &message);
            }
            event["metadata"]["namespace"] = json!(namespace);
            event["apiVersion"] = json!(resource.api_version());
            event["kind"] = json!(resource.kind);
            (StatusCode::CREATED, store.apply(event))
        }
        (hyper::Method::PATCH, Some(name)) => {
            if content_type != "application/merge-patch+json" {
                let message = format!("the stand-in API takes only merge patches, not {content_type:?}");
                return failure(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", &message);
            }
            let Some(before) = store.get(target.resource, &namespace, &name).cloned() else {
                let message = format!("events.events.k8s.io \"{name}\" not found");
                return failure(StatusCode::NOT_FOUND, "NotFound", &message);
            };
            let mut after = before.clone();
            events::merge(&mut after, &body);
            after["metadata"]["name"] = json!(name);
            after["metadata"]["namespace"] = json!(namespace);
            if let Err(errors) =
                events::validate_update(&events::as_written(&before), &events::as_written(&after), &namespace)
            {
                return invalid(&name, errors);
            }
            (StatusCode::OK, store.apply(after))
        }
        _ => {
            return failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "POST to a collection, PATCH an object",
            );
        }
    };
    match stored {
        Ok((_, stored)) => {
            shared.changes.send_replace(store.revision());
            json_response(status, &stored)
        }
        Err(err) => failure(StatusCode::BAD_REQUEST, "BadRequest", &err.to_string()),
    }
}

fn get(store: &Store, target: &Target, name: &str, shape: Shape) -> Response<Body> {
    let namespace = target.namespace.as_deref().unwrap_or("");
    match store.get(target.resource, namespace, name) {
        Some(object) => json_response(StatusCode::OK, &shaped(object, shape)),
        None => {
            let resource = store.resource(target.resource);
            let message = format!("{} \"{name}\" not found", resource.qualified());
            let details = json!({"name": name, "group": resource.group, "kind": resource.plural});
            json_response(
                StatusCode::NOT_FOUND,
                &status_object(StatusCode::NOT_FOUND, "NotFound", &message, Some(details)),
            )
        }
    }
}

/// Where a page ended: the list's version and the last key served.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    after: (String, String),
}

fn list(
    store: &Store,
    target: &Target,
    query: &BTreeMap<String, String>,
    selector: &Selector,
    shape: Shape,
) -> Response<Body> {
    let bad = |message: &str| failure(StatusCode::BAD_REQUEST, "BadRequest", message);
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => None,
        Some(Ok(0)) => None,
        Some(Ok(limit)) => Some(limit),
        Some(Err(_)) => return bad("limit must be a number"),
    };
    if let Some(version) = query.get("resourceVersion").filter(|v| !v.is_empty())
        && version.parse::<u64>().is_err()
    {
        return bad(&format!("invalid resource version {version:?}"));
    }
    let (revision, after) = match query.get("continue").filter(|c| !c.is_empty()) {
        None => (store.revision(), None),
        Some(token) => {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Continue>(&bytes).ok());
            let Some(token) = decoded else { return bad("continue key is not valid") };
            if store.check(token.rv).is_err() {
                let message = "The provided continue parameter is too old to display a consistent list result. \
                               You can start a new list without the continue parameter.";
                return failure(StatusCode::GONE, "Expired", message);
            }
            (token.rv, Some(token.after))
        }
    };
    let mut matching = store
        .list(target.resource, target.namespace.as_deref(), after.as_ref())
        .filter(|(_, object)| selector.matches(object));
    let page: Vec<(&(String, String), &Value)> = matching.by_ref().take(limit.unwrap_or(usize::MAX)).collect();
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if remaining > 0
        && let Some((last, _)) = page.last()
    {
        let token = Continue { rv: revision, after: (*last).clone() };
        let token = serde_json::to_vec(&token).expect("a continue token serialises");
        metadata["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
        metadata["remainingItemCount"] = json!(remaining);
    }
    let resource = store.resource(target.resource);
    let (kind, api_version) = match shape {
        Shape::Full => (format!("{}List", resource.kind), resource.api_version()),
        Shape::Metadata => ("PartialObjectMetadataList".to_owned(), "meta.k8s.io/v1".to_owned()),
    };
    let items: Vec<Value> = page.into_iter().map(|(_, object)| shaped(object, shape)).collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": items}),
    )
}

/// A watch's body: the lines its task sends, until the task ends.
struct WatchBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for WatchBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|line| line.map(|line| Ok(Frame::data(line))))
    }
}

/// Counts a watch as open for as long as its task runs.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn event(kind: &str, object: Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// What a filtered watcher sees of a change: an object that starts to match
/// is ADDED to it, one that stops is DELETED.
fn seen(change: &Change, selector: &Selector, name: Option<&str>) -> Option<&'static str> {
    let matches = |object: &Value| selector.matches(object) && name.is_none_or(|n| object["metadata"]["name"] == n);
    let now = matches(&change.object);
    let before = change.previous.as_ref().is_some_and(matches);
    match (change.kind, before, now) {
        ("MODIFIED", true, true) => Some("MODIFIED"),
        ("MODIFIED", false, true) => Some("ADDED"),
        ("MODIFIED", true, false) => Some("DELETED"),
        ("MODIFIED", false, false) => None,
        (kind, _, true) => Some(kind),
        _ => None,
    }
}

fn start_watch(
    shared: Arc<Shared>,
    mut faults: watch::Receiver<Faults>,
    target: Target,
    query: &BTreeMap<String, String>,
    selector: Selector,
    shape: Shape,
) -> Response<Body> {
    let bad = |message: &str| failure(StatusCode::BAD_REQUEST, "BadRequest", message);
    let version = query.get("resourceVersion").map(String::as_str).unwrap_or("");
    // "" and "0" start with the current state as ADDED events; a version
    // starts after it.
    let from = match version {
        "" | "0" => None,
        version => match version.parse::<u64>() {
            Ok(version) => Some(version),
            Err(_) => return bad(&format!("invalid resource version {version:?}")),
        },
    };
    let timeout = match query.get("timeoutSeconds").map(|t| t.parse::<u64>()) {
        None => DEFAULT_WATCH_TIMEOUT,
        Some(Ok(seconds)) => Duration::from_secs(seconds),
        Some(Err(_)) => return bad("timeoutSeconds must be a number"),
    };
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true" || b == "1");
    let initial_events = query.get("sendInitialEvents").is_some_and(|b| b == "true" || b == "1");
    if initial_events && !bookmarks {
        let message = "sendInitialEvents requires setting allowWatchBookmarks to true";
        return failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    }
    let (tx, rx) = mpsc::channel(64);
    shared.watchers.fetch_add(1, Ordering::SeqCst);
    let open = Open(shared.clone());
    let mut changes = shared.changes.subscribe();
    let (kind, api_version) = {
        let store = shared.store.lock().expect("store lock");
        let resource: &Resource = store.resource(target.resource);
        match shape {
            Shape::Full => (resource.kind.clone(), resource.api_version()),
            Shape::Metadata => ("PartialObjectMetadata".to_owned(), "meta.k8s.io/v1".to_owned()),
        }
    };
    let bookmark = move |revision: u64, annotations: Value| {
        let metadata = json!({"resourceVersion": revision.to_string(), "annotations": annotations});
        event("BOOKMARK", json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}))
    };
    tokio::spawn(async move {
        let _open = open;
        let name = target.name.as_deref();
        let namespace = target.namespace.as_deref();
        let mut lines = Vec::new();
        let start = {
            let store = shared.store.lock().expect("store lock");
            match from {
                Some(from) => store.check(from).map(|()| from),
                None => {
                    for (_, object) in store.list(target.resource, namespace, None) {
                        if selector.matches(object) && name.is_none_or(|n| object["metadata"]["name"] == n) {
                            lines.push(event("ADDED", shaped(object, shape)));
                        }
                    }
                    Ok(store.revision())
                }
            }
        };
        let mut position = match start {
            Ok(position) => position,
            Err(gone) => {
                let _ = tx.send(event("ERROR", gone_status(&gone))).await;
                return;
            }
        };
        if initial_events {
            lines.push(bookmark(position, json!({"k8s.io/initial-events-end": "true"})));
        }
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let every = (*shared.bookmark_every.lock().expect("bookmark lock")).max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let drained = {
                let store = shared.store.lock().expect("store lock");
                store.changes_after(position, target.resource, namespace).map(|changes| (changes, store.revision()))
            };
            match drained {
                Err(gone) => {
                    let _ = tx.send(event("ERROR", gone_status(&gone))).await;
                    return;
                }
                Ok((changes, revision)) => {
                    for change in changes {
                        if let Some(kind) = seen(&change, &selector, name)
                            && tx.send(event(kind, shaped(&change.object, shape))).await.is_err()
                        {
                            return;
                        }
                    }
                    position = revision;
                }
            }
            tokio::select! {
                () = &mut deadline => return,
                () = tx.closed() => return,
                // The API going away closes its watches with their connections.
                () = super::gone_away(&mut faults) => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = ticks.tick(), if bookmarks => {
                    if tx.send(bookmark(position, json!({}))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(WatchBody(rx).boxed())
        .expect("a watch response")
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("a%3Db%2Cc+d"), "a=b,c d");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
