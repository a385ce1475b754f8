use crate::Error;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The AdmissionRequest a plugin judges. Its objects come apart from it, as
/// JSON text, and stay text until a plugin asks for them, typed as it likes:
/// parsing each object once, and only the fields a policy reads, is what
/// keeps a plugin call cheap.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    /// Handed apart from the request (WIT `evaluate`), never parsed with it.
    #[serde(skip)]
    object: Option<&'a str>,
    #[serde(skip)]
    old_object: Option<&'a str>,
    #[serde(default)]
    pub dry_run: bool,
    /// What berth knows of the cluster (not part of the AdmissionRequest).
    #[serde(skip)]
    pub(crate) context: Context,
}

/// Facts of the cluster berth hands a plugin with the request. Each is set
/// only for a policy that asks for it in berth.yaml (`context:`), so a
/// plugin that reads one says so in its README.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The cluster's default StorageClass (`context: [defaultStorageClass]`),
    /// `None` when it has none or the policy did not ask.
    pub default_storage_class: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionResource {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl<'a> Request<'a> {
    /// Parse an AdmissionRequest (the `request` of an AdmissionReview,
    /// without its objects) and take its objects' JSON texts, as `evaluate`
    /// gets them. An `object` or `oldObject` still inside `request` is
    /// skipped, not parsed.
    pub fn parse(request: &'a str, object: Option<&'a str>, old_object: Option<&'a str>) -> Result<Self, Error> {
        let mut parsed: Self =
            serde_json::from_str(request).map_err(|err| Error::msg(format!("invalid AdmissionRequest: {err}")))?;
        parsed.object = object.filter(|text| text.trim() != "null");
        parsed.old_object = old_object.filter(|text| text.trim() != "null");
        Ok(parsed)
    }

    /// The cluster facts the policy asked for.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The object being admitted, as `T`. Unknown fields are skipped, so a
    /// small struct with only the fields the policy reads is the fast path.
    pub fn object<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let text = self.object.ok_or_else(|| Error::msg(format!("{:?} request has no object", self.operation)))?;
        serde_json::from_str(text).map_err(|err| Error::msg(format!("object: {err}")))
    }

    /// The stored object, for UPDATE and DELETE.
    pub fn old_object<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let text =
            self.old_object.ok_or_else(|| Error::msg(format!("{:?} request has no oldObject", self.operation)))?;
        serde_json::from_str(text).map_err(|err| Error::msg(format!("oldObject: {err}")))
    }

    /// Fail unless the request is for an object of `kind` (`Pod`), with the
    /// policy error `<plugin> applies to <kind>s, not <the request's kind>`
    /// (`tolerations applies to Pods, not PersistentVolumeClaim`). Only the
    /// kind is compared, not its group or version.
    pub fn require_kind(&self, kind: &str, plugin: &str) -> Result<(), Error> {
        if self.kind.kind == kind {
            return Ok(());
        }
        Err(Error::msg(format!("{plugin} applies to {}, not {}", plural(kind), self.kind.kind)))
    }

    /// Whether the request carries an object (it does not for DELETE).
    pub fn has_object(&self) -> bool {
        self.object.is_some()
    }

    /// The object as a typed Pod.
    #[cfg(feature = "k8s")]
    pub fn pod(&self) -> Result<k8s_openapi::api::core::v1::Pod, Error> {
        self.object()
    }

    /// The object as a typed PersistentVolumeClaim.
    #[cfg(feature = "k8s")]
    pub fn pvc(&self) -> Result<k8s_openapi::api::core::v1::PersistentVolumeClaim, Error> {
        self.object()
    }
}

/// The English plural of a kind, for messages: `Pods`, `Ingresses`,
/// `NetworkPolicies`.
fn plural(kind: &str) -> String {
    if ["s", "x", "z", "ch", "sh"].iter().any(|end| kind.ends_with(end)) {
        format!("{kind}es")
    } else if let Some(stem) = kind.strip_suffix('y').filter(|stem| !stem.ends_with(['a', 'e', 'i', 'o', 'u'])) {
        format!("{stem}ies")
    } else {
        format!("{kind}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str) -> String {
        format!(
            r#"{{"uid": "u", "operation": "CREATE", "kind": {{"version": "v1", "kind": "{kind}"}},
                "resource": {{"version": "v1", "resource": "x"}}}}"#
        )
    }

    #[test]
    fn require_kind_names_the_plugin_and_both_kinds() {
        let json = request("Pod");
        let pod = Request::parse(&json, None, None).unwrap();
        assert_eq!(pod.require_kind("Pod", "tolerations"), Ok(()));
        let err = pod.require_kind("PersistentVolumeClaim", "storage-class").unwrap_err();
        assert_eq!(err.message(), "storage-class applies to PersistentVolumeClaims, not Pod");
        let json = request("PersistentVolumeClaim");
        let claim = Request::parse(&json, None, None).unwrap();
        let err = claim.require_kind("Pod", "tolerations").unwrap_err();
        assert_eq!(err.message(), "tolerations applies to Pods, not PersistentVolumeClaim");
        // Kinds are case-sensitive, as the apiserver sends them.
        assert!(claim.require_kind("persistentvolumeclaim", "x").is_err());
    }

    #[test]
    fn kinds_pluralize_as_in_english() {
        for (kind, expected) in [
            ("Pod", "Pods"),
            ("Ingress", "Ingresses"),
            ("NetworkPolicy", "NetworkPolicies"),
            ("Gateway", "Gateways"),
            ("Box", "Boxes"),
            ("Patch", "Patches"),
        ] {
            assert_eq!(plural(kind), expected);
        }
    }
}
