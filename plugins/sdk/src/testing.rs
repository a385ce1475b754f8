//! Run a plugin's `evaluate` natively on AdmissionReview files, through the
//! same glue the component uses, and assert on the verdict or the changed
//! object.
//!
//! ```ignore
//! let outcome = berth_sdk::testing::Harness::new(evaluate)
//!     .settings(json!({"tolerations": [...]}))
//!     .run_file("../../tests/fixtures/pulsar/reviews/005-pod-pulsar-bookie-0.json");
//! assert!(outcome.verdict().is_allowed());
//! let pod: serde_json::Value = outcome.object();
//! ```

use crate::level::Level;
use crate::{Context, Error, Request, Settings, Verdict, glue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::cell::RefCell;
use std::path::Path;

thread_local! {
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn capture_log(level: Level, message: &str) {
    LOGS.with(|logs| logs.borrow_mut().push((level, message.to_owned())));
}

/// A plugin under test: its evaluate function and its settings.
pub struct Harness<S: Settings + 'static> {
    evaluate: fn(&Request<'_>, &S) -> Result<Verdict, Error>,
    settings: String,
    context: Context,
}

impl<S: Settings + 'static> Harness<S> {
    pub fn new(evaluate: fn(&Request<'_>, &S) -> Result<Verdict, Error>) -> Self {
        Self { evaluate, settings: "{}".to_owned(), context: Context::default() }
    }

    /// The cluster facts berth would hand the plugin.
    pub fn context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }

    /// The policy's settings, as they would appear in berth.yaml.
    pub fn settings(mut self, settings: Value) -> Self {
        self.settings = settings.to_string();
        self
    }

    /// What `validate-settings` answers for these settings.
    pub fn validate_settings(&self) -> Result<(), String> {
        glue::validate_settings::<S>(&self.settings)
    }

    /// Evaluate an AdmissionReview file (a fixture or a captured review).
    pub fn run_file(&self, path: impl AsRef<Path>) -> Outcome {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
        self.run_review(&text)
    }

    /// Evaluate an AdmissionReview given as JSON text.
    pub fn run_review(&self, review: &str) -> Outcome {
        let review: Value = serde_json::from_str(review).expect("review is JSON");
        self.run_request(review.get("request").cloned().expect("review has a request"))
    }

    /// Evaluate an AdmissionRequest value.
    pub fn run_request(&self, request: Value) -> Outcome {
        LOGS.with(|logs| logs.borrow_mut().clear());
        let wire = WireRequest::from_request(&request);
        let result = glue::evaluate::<S>(
            self.evaluate,
            &wire.request,
            wire.object.as_deref(),
            wire.old_object.as_deref(),
            &self.settings,
            self.context.clone(),
        );
        let logs = LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()));
        Outcome { request, result, logs }
    }
}

/// An AdmissionRequest as berth hands it to a plugin: the request without
/// its objects, and each object as its own JSON text.
#[derive(Debug, Clone)]
pub struct WireRequest {
    pub request: String,
    pub object: Option<String>,
    pub old_object: Option<String>,
}

impl WireRequest {
    /// Split an AdmissionRequest value as berth does.
    pub fn from_request(request: &Value) -> Self {
        let mut rest = request.clone();
        let mut take = |key: &str| {
            rest.as_object_mut().and_then(|fields| fields.remove(key)).filter(|v| !v.is_null()).map(|v| v.to_string())
        };
        let (object, old_object) = (take("object"), take("oldObject"));
        Self { request: rest.to_string(), object, old_object }
    }

    /// The [`Request`] a plugin's `evaluate` gets.
    pub fn parse(&self) -> Result<Request<'_>, Error> {
        Request::parse(&self.request, self.object.as_deref(), self.old_object.as_deref())
    }
}

/// The result of one evaluation.
#[derive(Debug)]
pub struct Outcome {
    request: Value,
    result: Result<Verdict, String>,
    logs: Vec<(Level, String)>,
}

impl Outcome {
    /// The verdict; panics if evaluate returned a policy error.
    pub fn verdict(&self) -> &Verdict {
        match &self.result {
            Ok(verdict) => verdict,
            Err(err) => panic!("evaluate failed: {err}"),
        }
    }

    /// The policy error, if evaluate failed.
    pub fn error(&self) -> Option<&str> {
        self.result.as_ref().err().map(String::as_str)
    }

    pub fn logs(&self) -> &[(Level, String)] {
        &self.logs
    }

    /// The object after the verdict's patch (the object itself if none).
    pub fn object_value(&self) -> Value {
        let mut object = self.request.get("object").cloned().unwrap_or(Value::Null);
        if let Some(patch) = self.verdict().patch() {
            let patch: json_patch::Patch = serde_json::from_str(&patch.to_json()).expect("patch is RFC 6902");
            json_patch::patch(&mut object, &patch).expect("patch applies to the object");
        }
        object
    }

    /// The object after the patch, typed (a k8s-openapi Pod, say).
    pub fn object<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.object_value()).expect("patched object has the expected type")
    }

    /// The patched object as a new AdmissionRequest: for a second pass,
    /// as kube-apiserver's reinvocation would send it.
    pub fn reinvocation(&self) -> Value {
        let mut request = self.request.clone();
        request["object"] = self.object_value();
        request
    }
}
