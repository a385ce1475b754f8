//! Checking one answer the way kube-apiserver would, plus what the run was
//! told to expect: whether the review is allowed, whether it carries a patch.

use base64::Engine as _;
use serde::Deserialize;

/// Whether answers must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpectAllowed {
    True,
    False,
    Any,
}

/// Whether answers must carry a JSON patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpectPatch {
    Always,
    Never,
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub allowed: ExpectAllowed,
    pub patch: ExpectPatch,
}

impl Default for Expect {
    fn default() -> Self {
        Self { allowed: ExpectAllowed::Any, patch: ExpectPatch::Any }
    }
}

/// Why a request did not count as a good answer. Each is its own line in
/// the report, so a run says what went wrong, not just how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// No connection could be made (TCP or TLS).
    Connect,
    /// The server refused the request before answering (a closed
    /// connection, an h2 GOAWAY or REFUSED_STREAM).
    NotAccepted,
    /// The answer started but broke off.
    Broken,
    /// No answer within the request timeout.
    Timeout,
    /// Still waiting for a free worker when the run had to stop (open loop
    /// only: the server fell behind the rate).
    NotSent,
    /// An HTTP status other than 200.
    Status(u16),
    /// The body is not an AdmissionReview.
    NotReview,
    /// `response.uid` is not the uid sent.
    Uid,
    /// `allowed` is not what was expected.
    Allowed,
    /// A patch was expected and none came.
    MissingPatch,
    /// A patch came where none was expected.
    UnexpectedPatch,
    /// `patchType` is not `JSONPatch`, or the patch is not base64 of a JSON
    /// array.
    BadPatch,
}

impl Failure {
    pub fn name(self) -> String {
        match self {
            Failure::Connect => "connect".into(),
            Failure::NotAccepted => "not-accepted".into(),
            Failure::Broken => "broken".into(),
            Failure::Timeout => "timeout".into(),
            Failure::NotSent => "not-sent".into(),
            Failure::Status(code) => format!("http-{code}"),
            Failure::NotReview => "not-a-review".into(),
            Failure::Uid => "uid-mismatch".into(),
            Failure::Allowed => "allowed-mismatch".into(),
            Failure::MissingPatch => "missing-patch".into(),
            Failure::UnexpectedPatch => "unexpected-patch".into(),
            Failure::BadPatch => "bad-patch".into(),
        }
    }
}

/// What a good answer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub patched: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    #[serde(borrow)]
    api_version: Option<&'a str>,
    #[serde(borrow)]
    kind: Option<&'a str>,
    response: Option<Response>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    uid: Option<String>,
    allowed: Option<bool>,
    patch_type: Option<String>,
    patch: Option<String>,
}

/// What an answer that failed its check said, for the report: the denial's
/// or error's message, or the start of the body.
pub fn describe(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Review {
        response: Option<Described>,
    }
    #[derive(Deserialize)]
    struct Described {
        status: Option<Message>,
    }
    #[derive(Deserialize)]
    struct Message {
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Review>(body)
        .ok()
        .and_then(|review| review.response?.status?.message)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let mut text = format!("HTTP {status}: {message}");
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Check an HTTP answer to the review sent with `uid`.
pub fn check(status: u16, body: &[u8], uid: &str, expect: Expect) -> Result<Verdict, Failure> {
    if status != 200 {
        return Err(Failure::Status(status));
    }
    let review: ResponseReview<'_> = serde_json::from_slice(body).map_err(|_| Failure::NotReview)?;
    if review.api_version != Some("admission.k8s.io/v1") || review.kind != Some("AdmissionReview") {
        return Err(Failure::NotReview);
    }
    let response = review.response.ok_or(Failure::NotReview)?;
    if response.uid.as_deref() != Some(uid) {
        return Err(Failure::Uid);
    }
    // `allowed` is required: an answer without it is not a review.
    let allowed = response.allowed.ok_or(Failure::NotReview)?;
    match (expect.allowed, allowed) {
        (ExpectAllowed::True, false) | (ExpectAllowed::False, true) => return Err(Failure::Allowed),
        _ => {}
    }
    let patched = match (response.patch_type.as_deref(), response.patch.as_deref()) {
        (None, None) => false,
        (Some("JSONPatch"), Some(patch)) => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(patch).map_err(|_| Failure::BadPatch)?;
            match serde_json::from_slice::<serde_json::Value>(&decoded) {
                Ok(serde_json::Value::Array(_)) => true,
                _ => return Err(Failure::BadPatch),
            }
        }
        // A patch without its type, a type without a patch, or another type.
        _ => return Err(Failure::BadPatch),
    };
    match (expect.patch, patched) {
        (ExpectPatch::Always, false) => Err(Failure::MissingPatch),
        (ExpectPatch::Never, true) => Err(Failure::UnexpectedPatch),
        _ => Ok(Verdict { allowed, patched }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";
    // [{"op":"add","path":"/a","value":1}]
    const PATCH: &str = "W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d";

    fn answer(response: &str) -> Vec<u8> {
        format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{response}}}"#).into_bytes()
    }

    fn expect(allowed: ExpectAllowed, patch: ExpectPatch) -> Expect {
        Expect { allowed, patch }
    }

    #[test]
    fn a_good_patch_answer_passes() {
        let body = answer(&format!(r#"{{"uid":"{UID}","allowed":true,"patchType":"JSONPatch","patch":"{PATCH}"}}"#));
        let verdict = check(200, &body, UID, expect(ExpectAllowed::True, ExpectPatch::Always));
        assert_eq!(verdict, Ok(Verdict { allowed: true, patched: true }));
    }

    #[test]
    fn a_denial_passes_only_when_denials_are_expected() {
        let body = answer(&format!(r#"{{"uid":"{UID}","allowed":false,"status":{{"code":403,"message":"no"}}}}"#));
        assert_eq!(
            check(200, &body, UID, expect(ExpectAllowed::False, ExpectPatch::Never)),
            Ok(Verdict { allowed: false, patched: false })
        );
        assert_eq!(check(200, &body, UID, expect(ExpectAllowed::True, ExpectPatch::Any)), Err(Failure::Allowed));
    }

    #[test]
    fn each_defect_is_named() {
        let any = Expect::default();
        let allow = |extra: &str| answer(&format!(r#"{{"uid":"{UID}","allowed":true{extra}}}"#));
        assert_eq!(check(503, b"busy", UID, any), Err(Failure::Status(503)));
        assert_eq!(check(200, b"not json", UID, any), Err(Failure::NotReview));
        let wrong_kind = br#"{"apiVersion":"admission.k8s.io/v1","kind":"Status","response":{}}"#;
        assert_eq!(check(200, wrong_kind, UID, any), Err(Failure::NotReview));
        assert_eq!(check(200, &allow(""), "another-uid", any), Err(Failure::Uid));
        assert_eq!(check(200, &answer(&format!(r#"{{"uid":"{UID}"}}"#)), UID, any), Err(Failure::NotReview));
        assert_eq!(
            check(200, &allow(""), UID, expect(ExpectAllowed::Any, ExpectPatch::Always)),
            Err(Failure::MissingPatch)
        );
        let patched = allow(&format!(r#","patchType":"JSONPatch","patch":"{PATCH}""#));
        assert_eq!(
            check(200, &patched, UID, expect(ExpectAllowed::Any, ExpectPatch::Never)),
            Err(Failure::UnexpectedPatch)
        );
        assert_eq!(check(200, &allow(&format!(r#","patch":"{PATCH}""#)), UID, any), Err(Failure::BadPatch));
        assert_eq!(
            check(200, &allow(r#","patchType":"JSONPatch","patch":"not base64!""#), UID, any),
            Err(Failure::BadPatch)
        );
        // base64 of {"op":"add"}: JSON, but not an RFC 6902 array.
        assert_eq!(
            check(200, &allow(r#","patchType":"JSONPatch","patch":"eyJvcCI6ImFkZCJ9""#), UID, any),
            Err(Failure::BadPatch)
        );
    }

    #[test]
    fn a_failed_answer_is_described_by_its_message() {
        let body = answer(r#"{"uid":"u","allowed":false,"status":{"code":500,"message":"policy x timed out"}}"#);
        assert_eq!(describe(200, &body), "HTTP 200: policy x timed out");
        assert_eq!(describe(503, b"busy"), "HTTP 503: busy");
        assert!(describe(200, "x".repeat(1000).as_bytes()).chars().count() < 310);
    }
}
