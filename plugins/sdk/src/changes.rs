//! What a request changes in a Pod: the images it brings.
//!
//! On CREATE every image of the Pod is new. On UPDATE the Pod already runs,
//! and a policy about images judges only what the update adds or changes:
//! an image that was already there is the Pod as it stands, not something
//! the user asked for now. Touching it would be a change nobody requested
//! (and, for a Pod created before the policy existed, would turn every
//! `kubectl label` into an image change or a denial).
//!
//! [`Changes`] holds what the request started from (`oldObject`'s
//! containers) and which container lists it may change, so a plugin asks
//! once, with the Pod it read its own way:
//!
//! ```
//! use berth_sdk::changes::Changes;
//! use berth_sdk::pod::PodImages;
//! use berth_sdk::Request;
//!
//! // As `evaluate` gets them: the request, and its objects apart.
//! let json = r#"{"uid": "u", "operation": "UPDATE", "subResource": "ephemeralcontainers",
//!     "kind": {"version": "v1", "kind": "Pod"}, "resource": {"version": "v1", "resource": "pods"}}"#;
//! let old = r#"{"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}"#;
//! let new = r#"{"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}],
//!                        "ephemeralContainers": [{"name": "debug", "image": "busybox:1.36"}]}}"#;
//! let request = Request::parse(json, Some(new), Some(old)).unwrap();
//! let pod: PodImages = request.object().unwrap();
//! let changes = Changes::of(&request).unwrap();
//! let new: Vec<_> = changes.new_images(&pod.spec).map(|c| (c.name, c.image)).collect();
//! assert_eq!(new, [("debug", "busybox:1.36")]);
//! ```
//!
//! A container is the same container when it has the same name in the same
//! list (the apiserver keeps names unique across a Pod's lists); it is new
//! when `oldObject` has no such container, changed when its image differs.
//!
//! Which lists an UPDATE may change (kube-apiserver's Pod update rules):
//!
//! | request | lists considered |
//! |---|---|
//! | CREATE | every list, every image |
//! | UPDATE of `pods` | containers, initContainers and ephemeralContainers (the apiserver refuses an ephemeral container change here, so only the first two can really change) |
//! | UPDATE of `pods/ephemeralcontainers` (`kubectl debug`) | ephemeralContainers only: the apiserver keeps nothing else from this request |

use crate::pod::{CONTAINER_LISTS, ContainerImage, Containers, PodImages};
use crate::{Error, Operation, Request};

/// The Pod sub-resource `kubectl debug` updates to add an ephemeral
/// container.
pub const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

/// What a request starts from, to tell which of its images are new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The stored Pod's containers on UPDATE; `None` when everything is new.
    old: Option<Containers>,
    /// The container lists the request may change, as JSON names them.
    lists: &'static [&'static str],
}

impl Changes {
    /// Read from `request`: on UPDATE, `oldObject`'s containers (its other
    /// fields are skipped unparsed), and which lists the update may change.
    /// An UPDATE without `oldObject` is an error: the apiserver always sends
    /// it, and without it nothing could be told apart.
    pub fn of(request: &Request) -> Result<Self, Error> {
        if request.operation != Operation::Update {
            return Ok(Self { old: None, lists: &CONTAINER_LISTS });
        }
        let old: PodImages = request.old_object()?;
        let lists: &'static [&'static str] = match request.sub_resource.as_deref() {
            Some(EPHEMERAL_CONTAINERS) => &["ephemeralContainers"],
            _ => &CONTAINER_LISTS,
        };
        Ok(Self { old: Some(old.spec), lists })
    }

    /// Whether the request updates an existing Pod (it has an `oldObject`).
    pub fn is_update(&self) -> bool {
        self.old.is_some()
    }

    /// The images of `object` (the request's object, as the plugin read it)
    /// that this request brings: all of them on CREATE; on UPDATE those of
    /// containers that are new or whose image changed, in the lists the
    /// update may change. The order is [`Containers::images`]'.
    pub fn new_images<'a>(&'a self, object: &'a Containers) -> impl Iterator<Item = ContainerImage<'a>> + 'a {
        object
            .images()
            .filter(|container| self.lists.contains(&container.list))
            .filter(|container| self.old.as_ref().is_none_or(|old| old_image(old, container) != Some(container.image)))
    }
}

/// The image the container of the same name in the same list had before.
fn old_image<'a>(old: &'a Containers, container: &ContainerImage<'_>) -> Option<&'a str> {
    let list = match container.list {
        "initContainers" => &old.init_containers,
        "containers" => &old.containers,
        _ => &old.ephemeral_containers,
    };
    list.as_deref()?.iter().find(|c| c.name == container.name)?.image.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::WireRequest;
    use serde_json::{Value, json};

    fn request(operation: &str, sub: Option<&str>, old: Value, object: Value) -> String {
        let mut request = json!({
            "uid": "u", "operation": operation,
            "kind": {"version": "v1", "kind": "Pod"}, "resource": {"version": "v1", "resource": "pods"},
            "object": object, "oldObject": old,
        });
        if let Some(sub) = sub {
            request["subResource"] = sub.into();
        }
        request.to_string()
    }

    fn wire(json: &str) -> WireRequest {
        WireRequest::from_request(&serde_json::from_str(json).unwrap())
    }

    fn new_images(json: &str) -> Vec<(&'static str, String, String)> {
        let wire = wire(json);
        let request = wire.parse().unwrap();
        let pod: PodImages = request.object().unwrap();
        let changes = Changes::of(&request).unwrap();
        changes.new_images(&pod.spec).map(|c| (c.list, c.name.to_owned(), c.image.to_owned())).collect()
    }

    fn spec(value: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": value})
    }

    fn owned(list: &'static str, name: &str, image: &str) -> (&'static str, String, String) {
        (list, name.to_owned(), image.to_owned())
    }

    #[test]
    fn on_create_every_image_is_new() {
        let pod = spec(json!({"initContainers": [{"name": "init", "image": "alpine"}],
                              "containers": [{"name": "app", "image": "nginx"}]}));
        let json = request("CREATE", None, Value::Null, pod);
        assert_eq!(new_images(&json), [owned("initContainers", "init", "alpine"), owned("containers", "app", "nginx")]);
        let wire = wire(&json);
        assert!(!Changes::of(&wire.parse().unwrap()).unwrap().is_update());
    }

    #[test]
    fn an_update_brings_only_new_and_changed_images() {
        let old = spec(json!({
            "initContainers": [{"name": "init", "image": "alpine"}],
            "containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "envoy:1"}],
        }));
        // `kubectl set image` on one container; the others are as they were.
        let new = spec(json!({
            "initContainers": [{"name": "init", "image": "alpine"}],
            "containers": [{"name": "app", "image": "nginx:1.28"}, {"name": "side", "image": "envoy:1"}],
        }));
        assert_eq!(new_images(&request("UPDATE", None, old.clone(), new)), [owned("containers", "app", "nginx:1.28")]);
        // A label update: nothing.
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"maintenance": "planned"});
        assert_eq!(new_images(&request("UPDATE", None, old.clone(), labelled)), []);
        // Matched by name, not by position.
        let reordered = spec(json!({
            "initContainers": [{"name": "init", "image": "alpine"}],
            "containers": [{"name": "side", "image": "envoy:1"}, {"name": "app", "image": "nginx:1.27"}],
        }));
        assert_eq!(new_images(&request("UPDATE", None, old, reordered)), []);
    }

    #[test]
    fn a_container_of_the_same_name_in_another_list_is_another_container() {
        let old = spec(json!({"initContainers": [{"name": "x", "image": "alpine"}]}));
        let new = spec(json!({"initContainers": [{"name": "x", "image": "alpine"}],
                              "containers": [{"name": "x", "image": "alpine"}]}));
        assert_eq!(new_images(&request("UPDATE", None, old, new)), [owned("containers", "x", "alpine")]);
    }

    #[test]
    fn the_ephemeralcontainers_subresource_changes_only_ephemeral_containers() {
        let old = spec(json!({"containers": [{"name": "app", "image": "nginx"}],
                              "ephemeralContainers": [{"name": "debug-1", "image": "busybox"}]}));
        // A client may send anything in the other lists; the apiserver keeps
        // only the ephemeral containers of this request.
        let new = spec(json!({"containers": [{"name": "app", "image": "other"}],
                              "ephemeralContainers": [{"name": "debug-1", "image": "busybox"},
                                                      {"name": "debug-2", "image": "quay.io/x/y:1"}]}));
        assert_eq!(
            new_images(&request("UPDATE", Some(EPHEMERAL_CONTAINERS), old.clone(), new.clone())),
            [owned("ephemeralContainers", "debug-2", "quay.io/x/y:1")]
        );
        // Through plain `pods` the same body brings both (the apiserver would
        // refuse the ephemeral change, but nothing is hidden from a policy).
        assert_eq!(
            new_images(&request("UPDATE", None, old, new)),
            [owned("containers", "app", "other"), owned("ephemeralContainers", "debug-2", "quay.io/x/y:1")]
        );
    }

    #[test]
    fn an_old_pod_without_lists_or_images_makes_everything_new() {
        let new = spec(json!({"containers": [{"name": "app", "image": "nginx"}]}));
        for old in [json!({}), spec(json!({"containers": null})), spec(json!({"containers": [{"name": "app"}]}))] {
            assert_eq!(
                new_images(&request("UPDATE", None, old.clone(), new.clone())),
                [owned("containers", "app", "nginx")],
                "{old}"
            );
        }
    }

    #[test]
    fn an_update_without_old_object_is_an_error() {
        for old in [Value::Null, json!("not a pod")] {
            let json = request("UPDATE", None, old.clone(), spec(json!({})));
            let wire = wire(&json);
            let err = Changes::of(&wire.parse().unwrap()).unwrap_err();
            assert!(err.message().contains("oldObject"), "{old}: {}", err.message());
        }
    }
}
