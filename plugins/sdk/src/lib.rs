//! # berth-sdk: admission policies as WebAssembly components
//!
//! A plugin is a settings struct and one `evaluate` function:
//!
//! ```
//! use berth_sdk::{Error, Patch, Request, Settings, SettingsError, Verdict};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields, rename_all = "camelCase")]
//! pub struct MySettings {
//!     label: String,
//! }
//!
//! impl Settings for MySettings {
//!     fn validate(&self) -> Result<(), SettingsError> {
//!         if self.label.is_empty() {
//!             return Err(SettingsError::new("label", "must not be empty"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! pub fn evaluate(request: &Request, settings: &MySettings) -> Result<Verdict, Error> {
//!     #[derive(Deserialize)]
//!     struct Object { metadata: Meta }
//!     #[derive(Deserialize)]
//!     struct Meta { #[serde(default)] labels: std::collections::BTreeMap<String, String> }
//!
//!     let object: Object = request.object()?;
//!     if object.metadata.labels.contains_key(&settings.label) {
//!         return Ok(Verdict::allow());
//!     }
//!     Ok(Verdict::deny(format!("label {} is required", settings.label)))
//! }
//!
//! // In a plugin crate: berth_sdk::export_plugin!(MySettings, evaluate);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; test it
//! natively with [`testing`], without Wasm.
//!
//! A policy for one kind of object starts with [`Request::require_kind`],
//! which turns a request for any other kind into a policy error. What Pod
//! policies share is in [`pod`]: [`pod::Pod`], a Pod read only for the spec
//! fields a plugin declares (the fast path: nothing else is parsed), the
//! [`pod::Toleration`] settings type, with its validation and its test for a
//! toleration the Pod already has, and [`pod::PodImages`], a partial Pod that
//! reads only its containers' names and images. [`names`] checks Kubernetes
//! object names in settings.
//!
//! On UPDATE a policy about images judges only what the update brings:
//! [`changes::Changes`] tells the new and changed images from those the
//! stored Pod (`oldObject`) already runs, for `kubectl set image` and for
//! `kubectl debug` (the `pods/ephemeralcontainers` sub-resource) alike;
//! [`apiserver`] builds those UPDATE requests for tests.

mod error;
mod level;
mod patch;
mod request;
mod settings;
mod verdict;

pub mod changes;
#[doc(hidden)]
pub mod glue;
pub mod log;
pub mod names;
pub mod pod;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(not(target_arch = "wasm32"))]
pub mod apiserver;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use error::Error;
pub use patch::{Patch, PatchOp, pointer};
pub use request::{Context, GroupVersionKind, GroupVersionResource, Operation, Request, UserInfo};
pub use settings::{Settings, SettingsError};
pub use verdict::{Decision, Verdict};

#[cfg(feature = "k8s")]
pub use k8s_openapi;

/// Re-exported so that `export_plugin!` works without the plugin naming them.
#[doc(hidden)]
pub use serde_json;

/// Export a plugin: its settings type and its evaluate function.
///
/// ```ignore
/// berth_sdk::export_plugin!(Settings, evaluate);
/// ```
///
/// On `wasm32` this emits the component glue; elsewhere it emits nothing, so
/// the same crate is tested natively.
#[macro_export]
macro_rules! export_plugin {
    ($settings:ty, $evaluate:path) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct Plugin;
            impl $crate::guest::Guest for Plugin {
                fn validate_settings(settings: String) -> Result<(), String> {
                    $crate::guest::install_panic_hook();
                    $crate::glue::validate_settings::<$settings>(&settings)
                }
                fn evaluate(
                    request: String,
                    object: Option<String>,
                    old_object: Option<String>,
                    settings: String,
                    context: $crate::guest::WitContext,
                ) -> Result<$crate::guest::WitVerdict, String> {
                    $crate::guest::install_panic_hook();
                    let context = $crate::guest::from_wit(context);
                    $crate::glue::evaluate::<$settings>(
                        $evaluate,
                        &request,
                        object.as_deref(),
                        old_object.as_deref(),
                        &settings,
                        context,
                    )
                    .map($crate::guest::into_wit)
                }
            }
    $crate::guest::export!(Plugin with_types_in $crate::guest);
        };
    };
}
