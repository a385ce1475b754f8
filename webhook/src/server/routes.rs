//! HTTP routes: the two admission endpoints, health, readiness, metrics.

use super::App;
use super::peer::Peer;
use crate::admission::{Endpoint, admit};
use crate::audit::OnError;
use crate::review::Review;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// The routes; every request carries its connection's [`Peer`] (the
/// listener adds it).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(app)
}

async fn mutate(State(app): State<Arc<App>>, Extension(peer): Extension<Peer>, request: Request) -> Response {
    review(app, Endpoint::Mutate, peer, request).await
}

async fn validate(State(app): State<Arc<App>>, Extension(peer): Extension<Peer>, request: Request) -> Response {
    review(app, Endpoint::Validate, peer, request).await
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.policies.load().as_ref() {
        // Serving before the caches sync would answer from an empty
        // picture of the cluster.
        Some(set) if !set.unsynced().is_empty() => {
            let pending = set.unsynced().join(", ");
            (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for the Kubernetes API: {pending}\n")).into_response()
        }
        Some(set) => (StatusCode::OK, format!("ready: {} policies\n", set.policies().len())).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "loading policies\n").into_response(),
    }
}

async fn review(app: Arc<App>, endpoint: Endpoint, peer: Peer, request: Request) -> Response {
    let started = Instant::now();
    if app.verifies_clients && !peer.certified {
        app.metrics.request(endpoint, "forbidden", started.elapsed());
        return plain(
            StatusCode::FORBIDDEN,
            "berth: a client certificate signed by the --client-ca CA is required on this endpoint",
        );
    }
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = match read_body(&app, expects_continue, request.into_body()).await {
        Ok(body) => body,
        Err(refused) => {
            app.metrics.request(endpoint, "bad_request", started.elapsed());
            return refused;
        }
    };
    let Some(policies) = app.policies.load_full() else {
        app.metrics.request(endpoint, "unavailable", started.elapsed());
        return plain(StatusCode::SERVICE_UNAVAILABLE, "berth is still loading its policies");
    };
    // Wasm calls are synchronous: they run on the blocking pool, at most
    // `workers` at once; past that a request waits a bounded time.
    // First this connection's turn, then a worker (peer.rs says why).
    let turn = async {
        let turn = peer.turn().await?;
        let worker = app.workers.clone().acquire_owned().await?;
        Ok::<_, tokio::sync::AcquireError>((turn, worker))
    };
    let permit = match tokio::time::timeout(app.queue_timeout, turn).await {
        Ok(Ok(permit)) => permit,
        _ => {
            app.metrics.request(endpoint, "unavailable", started.elapsed());
            let message = format!("berth is at capacity: no worker free within {:?}", app.queue_timeout);
            return plain(StatusCode::SERVICE_UNAVAILABLE, &message);
        }
    };
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let review = Review::parse(&body)?;
        Ok(admit(&policies, endpoint, review))
    });
    let admitted = match task.await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(err)) => {
            let err: crate::review::ReviewError = err;
            app.metrics.request(endpoint, "bad_request", started.elapsed());
            let reason = crate::error_chain(&err);
            tracing::debug!(endpoint = endpoint.as_str(), "bad review: {reason}");
            return plain(StatusCode::BAD_REQUEST, &format!("berth: invalid AdmissionReview: {reason}"));
        }
        Err(err) => {
            app.metrics.request(endpoint, "error", started.elapsed());
            tracing::error!(endpoint = endpoint.as_str(), "admission task failed: {err}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "berth: the admission task failed; see berth's log");
        }
    };
    app.metrics.admitted(&admitted);
    let response = audit(&app, endpoint, &admitted).await.unwrap_or(admitted.response);
    let outcome = match (response.allowed, response.patch.is_some()) {
        (false, _) => "denied",
        (true, true) => "mutated",
        (true, false) => "allowed",
    };
    if !response.allowed {
        tracing::info!(
            endpoint = endpoint.as_str(),
            uid = %response.uid,
            message = response.status.as_ref().map(|s| s.message.as_str()).unwrap_or(""),
            "denied"
        );
        // After the audit record: queued for a background task, never waited on.
        let said_no =
            admitted.outcomes.iter().any(|o| matches!(o.result, crate::admission::PolicyResult::Denied { .. }));
        app.events.denied(
            &admitted.request,
            &response,
            !said_no,
            app.policies.load().as_ref().map(|set| set.cluster()),
        );
    }
    app.metrics.request(endpoint, outcome, started.elapsed());
    match serde_json::to_vec(&response.into_review()) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(err) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("berth: encoding the response: {err}")),
    }
}

/// Record denials and policy errors (and mutations, if configured) before
/// answering: an acknowledged denial is never lost. If the record cannot be
/// written, `audit.onError` decides; `Some` is the response to send instead.
async fn audit(
    app: &App,
    endpoint: Endpoint,
    admitted: &crate::admission::Admitted,
) -> Option<crate::review::AdmissionResponse> {
    if !app.audit.wants(admitted) {
        return None;
    }
    let records = app.audit.records(endpoint, &admitted.request, admitted);
    let count = records.len() as u64;
    let err = app.audit.write(records).await.err()?;
    app.metrics.audit_failures.inc_by(count);
    match app.audit.on_error() {
        OnError::Deny => {
            tracing::error!(uid = %admitted.request.uid, "audit log write failed; denying (audit.onError: deny): {err}");
            let mut response = admitted.response.clone();
            response.deny(500, format!("berth could not write its audit log, and audit.onError is deny: {err}"));
            Some(response)
        }
        OnError::Allow => {
            tracing::error!(uid = %admitted.request.uid, "audit log write failed; answering anyway (audit.onError: allow): {err}");
            None
        }
    }
}

/// A body over `--max-body-size` is read to its end, up to this much in
/// all, and thrown away before the 413 goes out. Answering mid-upload is
/// allowed (HTTP/2: the response, then RST_STREAM with NO_ERROR, RFC 9113
/// §8.1; HTTP/1.1: the response, then close), but clients that are still
/// writing then fail the request without showing the 413 (curl 7.88 over
/// HTTP/2, hyper's client over HTTP/1.1). A larger body is answered at
/// once, and its stream reset or its connection closed.
const DRAIN_LIMIT: usize = 16 << 20;

/// The request body, read within `--body-timeout` and `--max-body-size`;
/// or the answer to send instead.
async fn read_body(app: &App, expects_continue: bool, mut body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("berth: the review is larger than the {} byte limit (--max-body-size)", app.max_body),
        )
    };
    let deadline = tokio::time::Instant::now() + app.body_timeout;
    // Announced too large (Content-Length) to a client that waits for
    // `100 Continue` before sending it: answer now, it never sends it.
    let announced = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if announced > app.max_body && (expects_continue || announced > DRAIN_LIMIT) {
        return Err(too_large());
    }
    // Grown as the body arrives: a Content-Length alone reserves little.
    let mut received = Vec::with_capacity(announced.min(app.max_body).min(64 << 10));
    let mut seen = 0_usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    &format!("berth: could not read the request body: {}", crate::error_chain(&err)),
                ));
            }
            Err(_) if seen > app.max_body => return Err(too_large()),
            Err(_) => {
                return Err(plain(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("berth: the request body did not arrive within {:?} (--body-timeout)", app.body_timeout),
                ));
            }
        };
        // Trailers carry nothing berth reads.
        let Ok(data) = frame.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen > app.max_body {
            if seen > DRAIN_LIMIT {
                return Err(too_large());
            }
            received = Vec::new();
            continue;
        }
        received.extend_from_slice(&data);
    }
    if seen > app.max_body || announced > app.max_body {
        return Err(too_large());
    }
    Ok(Bytes::from(received))
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

/// `/metrics` on its own plain-HTTP listener.
pub fn serve_metrics(listener: TcpListener, app: Arc<App>) {
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(app): State<Arc<App>>| async move {
                (
                    [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    app.metrics.encode(),
                )
            }),
        )
        .with_state(app);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!("metrics listener failed: {err}");
        }
    });
}
