//! The stand-in Kubernetes API, checked with kube-rs itself: what a suite
//! puts in it (a fixture's cluster.yaml, changes at runtime, faults) is what
//! kube-rs's client and watcher read from it.

use berth_e2e::fixtures;
use berth_e2e::kube::{Away, FakeKubeApi, load_cluster};
use futures_util::{Stream, StreamExt as _};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SET: &str = "seed-pulsar-2.7.7";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

fn cluster() -> Vec<Value> {
    load_cluster(&fixtures::dir().join(SET).join("cluster.yaml")).expect("the fixture's cluster.yaml")
}

fn of_kind(objects: &[Value], kind: &str) -> Vec<Value> {
    objects.iter().filter(|o| o["kind"] == kind).cloned().collect()
}

fn meta(object: &Value) -> ObjectMeta {
    serde_json::from_value(object["metadata"].clone()).expect("ObjectMeta")
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

fn text(object: &Value, pointer: &str) -> String {
    object.pointer(pointer).and_then(Value::as_str).expect(pointer).to_owned()
}

async fn start() -> (FakeKubeApi, kube::Client) {
    let api = FakeKubeApi::from_fixture(SET).await.expect("the fixture's cluster.yaml loads");
    let client = kube::Client::try_from(api.kube_config()).expect("a client for the stand-in");
    (api, client)
}

/// One of the fixture's Jobs, renamed into another namespace, as a test
/// would create it (no uid or resourceVersion: the API gives those).
fn job_like(template: &Value, namespace: &str, name: &str) -> Value {
    let mut job = template.clone();
    job["metadata"]["namespace"] = namespace.into();
    job["metadata"]["name"] = name.into();
    let metadata = job["metadata"].as_object_mut().expect("metadata");
    metadata.remove("uid");
    metadata.remove("resourceVersion");
    job
}

/// A channel's receiving end as a stream.
fn tokio_stream<T>(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> + Unpin + '_ {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

/// The next item of a stream, within 10 s.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("a stream item within 10s")
}

fn api_status(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected a Status from the API, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_across_namespaces_are_listed_as_metadata_page_by_page() {
    let (api, client) = start().await;
    let objects = cluster();
    let fixture_jobs = of_kind(&objects, "Job");
    assert!(fixture_jobs.len() >= 2, "the fixture has Jobs to page through");
    let extra = api.apply(job_like(&fixture_jobs[0], "other", "other-init")).expect("a Job in another namespace");
    let mut expected: BTreeMap<_, _> = fixture_jobs.iter().map(|j| (key(&meta(j)), meta(j))).collect();
    expected.insert(key(&meta(&extra)), meta(&extra));

    let jobs: Api<Job> = Api::all(client.clone());
    let (mut seen, mut versions, mut token) = (BTreeMap::new(), BTreeSet::new(), None::<String>);
    let mut pages = 0;
    loop {
        let mut params = ListParams::default().limit(1);
        if let Some(token) = token.take() {
            params = params.continue_token(&token);
        }
        let page = jobs.list_metadata(&params).await.expect("a page of Jobs");
        pages += 1;
        assert_eq!(page.items.len(), 1, "limit=1");
        versions.insert(page.metadata.resource_version.clone().expect("a list version"));
        for item in page.items {
            assert_eq!(item.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
            seen.insert(key(&item.metadata), item.metadata);
        }
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, expected.len(), "one page per Job");
    assert_eq!(seen, expected, "every Job's metadata, as cluster.yaml has it (and as the test applied it)");
    assert_eq!(versions, BTreeSet::from([api.resource_version().to_string()]), "all pages are of one list");

    let requests = api.requests();
    assert_eq!(requests.len(), pages);
    for (i, request) in requests.iter().enumerate() {
        assert!(request.is_metadata_only() && request.is_authenticated(), "{request:?}");
        assert_eq!(request.accept.as_deref(), Some(METADATA_LIST));
        assert_eq!(request.path_only(), "/apis/batch/v1/jobs");
        assert_eq!(request.query("limit"), Some("1"));
        assert_eq!(request.query("continue").is_some(), i > 0, "{request:?}");
    }

    // One namespace's Jobs; and a kind the cluster has none of is an empty list.
    let other = Api::<Job>::namespaced(client.clone(), "other").list_metadata(&ListParams::default()).await;
    let names: Vec<_> = other.expect("Jobs in other").items.into_iter().map(|j| j.metadata.name).collect();
    assert_eq!(names, vec![Some("other-init".to_owned())]);
    let classes = Api::<StorageClass>::all(client).list_metadata(&ListParams::default()).await;
    assert!(classes.expect("StorageClasses").items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metadata_finds_a_replicaset_with_its_owner_and_a_missing_one_is_404() {
    let (api, client) = start().await;
    let objects = cluster();
    let fixture = of_kind(&objects, "ReplicaSet").into_iter().next().expect("the fixture has a ReplicaSet");
    let deployment = of_kind(&objects, "Deployment").into_iter().next().expect("and its Deployment");
    let (namespace, name) = key(&meta(&fixture));

    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), &namespace);
    let found = replicasets.get_metadata(&name).await.expect("the ReplicaSet's metadata");
    assert_eq!(found.metadata, meta(&fixture));
    let owner = found.metadata.owner_references.unwrap_or_default().into_iter().next().expect("an owner");
    assert_eq!((owner.kind.as_str(), owner.uid), ("Deployment", text(&deployment, "/metadata/uid")));

    let status = api_status(replicasets.get_metadata("no-such-replicaset").await.expect_err("404"));
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "replicasets.apps \"no-such-replicaset\" not found");
    assert!(replicasets.get_metadata_opt("no-such-replicaset").await.expect("a 404 is None").is_none());

    // Cluster-scoped: the Namespace, by name.
    let namespaces: Api<Namespace> = Api::all(client);
    let found = namespaces.get_metadata(&namespace).await.expect("the namespace");
    assert_eq!(found.metadata.uid, meta(&of_kind(&objects, "Namespace")[0]).uid);

    let requests = api.requests();
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.accept.as_deref() == Some(METADATA) && r.is_authenticated()), "{requests:?}");
    assert_eq!(requests[0].path, format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"));
    assert_eq!(requests[3].path, format!("/api/v1/namespaces/{namespace}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_watcher_lists_then_sees_jobs_added_and_deleted() {
    let (api, client) = start().await;
    api.set_bookmark_interval(Duration::from_millis(50));
    let fixture_jobs = of_kind(&cluster(), "Job");
    let mut stream =
        watcher(Api::<PartialObjectMeta<Job>>::all(client), watcher::Config::default().page_size(1)).boxed();

    assert!(matches!(next(&mut stream).await, Some(Ok(watcher::Event::Init))));
    let mut initial = BTreeSet::new();
    loop {
        match next(&mut stream).await.expect("the watcher goes on").expect("no error") {
            watcher::Event::InitApply(job) => initial.insert(key(&job.metadata)),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?} during the initial list"),
        };
    }
    let expected: BTreeSet<_> = fixture_jobs.iter().map(|j| key(&meta(j))).collect();
    assert_eq!(initial, expected);
    let listed_at = api.resource_version();

    // Bookmarks come and go unseen; then a Job the test adds, and one it deletes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let added = api.apply(job_like(&fixture_jobs[0], "other", "other-init")).expect("apply");
    match next(&mut stream).await.expect("goes on").expect("no error") {
        watcher::Event::Apply(job) => assert_eq!(job.metadata, meta(&added)),
        other => panic!("expected the added Job, got {other:?}"),
    }
    let (namespace, name) = key(&meta(&fixture_jobs[1]));
    api.delete("Job", Some(&namespace), &name).expect("the fixture's Job");
    match next(&mut stream).await.expect("goes on").expect("no error") {
        watcher::Event::Delete(job) => assert_eq!(key(&job.metadata), (namespace, name)),
        other => panic!("expected the deleted Job, got {other:?}"),
    }

    let requests = api.requests();
    assert!(requests.iter().all(|r| r.is_metadata_only() && r.is_authenticated()), "{requests:?}");
    let lists = requests.iter().filter(|r| !r.is_watch()).count();
    assert_eq!(lists, fixture_jobs.len(), "one page per Job: {requests:?}");
    let watch = requests.iter().find(|r| r.is_watch()).expect("a watch");
    assert_eq!(watch.accept.as_deref(), Some(METADATA));
    assert_eq!(watch.query("resourceVersion"), Some(listed_at.to_string().as_str()), "from the list's version");
    assert_eq!(watch.query("allowWatchBookmarks"), Some("true"));
    assert_eq!(requests.iter().filter(|r| r.is_watch()).count(), 1, "bookmarks kept the one watch going");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_list_watch_gets_the_initial_objects_and_the_end_bookmark() {
    let (api, client) = start().await;
    let fixture_jobs = of_kind(&cluster(), "Job");
    #[allow(deprecated)] // the name the lead's brief uses; same requests as watcher(Api<PartialObjectMeta<_>>)
    let stream = kube::runtime::metadata_watcher(Api::<Job>::all(client), watcher::Config::default().streaming_lists());
    let mut stream = stream.boxed();
    assert!(matches!(next(&mut stream).await, Some(Ok(watcher::Event::Init))));
    let mut initial = BTreeSet::new();
    loop {
        match next(&mut stream).await.expect("goes on").expect("no error") {
            watcher::Event::InitApply(job) => initial.insert(key(&job.metadata)),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        };
    }
    assert_eq!(initial, fixture_jobs.iter().map(|j| key(&meta(j))).collect::<BTreeSet<_>>());
    let added = api.apply(job_like(&fixture_jobs[0], "other", "other-init")).expect("apply");
    match next(&mut stream).await.expect("goes on").expect("no error") {
        watcher::Event::Apply(job) => assert_eq!(job.metadata, meta(&added)),
        other => panic!("expected the added Job, got {other:?}"),
    }
    let requests = api.requests();
    assert_eq!(requests.len(), 1, "no list: {requests:?}");
    assert_eq!(requests[0].query("sendInitialEvents"), Some("true"));
}

/// Whether an error's chain holds an I/O timeout.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        next = error.source();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_outlasts_a_short_client_timeout() {
    let (api, _) = start().await;
    let mut config = api.kube_config();
    config.read_timeout = Some(Duration::from_millis(300));
    config.reset_reader_on_write = true;
    let jobs: Api<Job> = Api::all(kube::Client::try_from(config).expect("client"));

    api.set_delay(Duration::from_secs(3));
    let started = Instant::now();
    let error = jobs.list_metadata(&ListParams::default()).await.expect_err("the client gives up");
    assert!(started.elapsed() < Duration::from_secs(2), "it gave up at its timeout, {:?}", started.elapsed());
    assert!(timed_out(&error), "{error:?}");
    assert_eq!(api.requests().len(), 1, "the request reached the API, which was slow");

    // Slow, but within the timeout: answered, after the delay.
    api.set_delay(Duration::from_millis(150));
    let started = Instant::now();
    jobs.list_metadata(&ListParams::default()).await.expect("answered within the timeout");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_api_is_away_requests_fail_and_watches_end_until_it_comes_back() {
    let (api, client) = start().await;
    api.set_bookmark_interval(Duration::from_secs(3600));
    let jobs: Api<Job> = Api::all(client.clone());
    jobs.list_metadata(&ListParams::default()).await.expect("the API is up");
    // The watcher runs on its own, as in berth: it re-watches when a watch ends.
    let (sender, mut watcher_events) = tokio::sync::mpsc::unbounded_channel();
    let mut stream =
        watcher(Api::<PartialObjectMeta<Job>>::all(client), watcher::Config::default()).default_backoff().boxed();
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if sender.send(event).is_err() {
                return;
            }
        }
    });
    let mut watcher_events = tokio_stream(&mut watcher_events);
    while !matches!(next(&mut watcher_events).await, Some(Ok(watcher::Event::InitDone))) {}

    for away in [Away::Refused, Away::Dropped] {
        let version = api.resource_version().to_string();
        let mut watch = jobs.watch_metadata(&WatchParams::default(), &version).await.expect("a watch").boxed();
        let deadline = Instant::now() + Duration::from_secs(5);
        while api.watchers() < 2 {
            assert!(Instant::now() < deadline, "the watches never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = api.requests().len();
        api.go_away(away).await;

        assert!(!matches!(next(&mut watch).await, Some(Ok(_))), "{away:?}: the open watch ended");
        let error = jobs.list_metadata(&ListParams::default()).await.expect_err("no API, no list");
        assert!(!matches!(error, kube::Error::Api(_)), "{away:?}: a connection failure, not a status: {error:?}");
        assert!(matches!(next(&mut watcher_events).await, Some(Err(_))), "{away:?}: the watcher reports the API gone");
        assert_eq!(api.requests().len(), before, "{away:?}: nothing reached the API");
        while api.watchers() > 0 {
            assert!(Instant::now() < deadline, "{away:?}: watches still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        api.come_back().await;
        jobs.list_metadata(&ListParams::default()).await.expect("the API is back");
        // The watcher relists and resumes.
        let added = api.apply(job_like(&of_kind(&cluster(), "Job")[0], "other", &format!("{away:?}").to_lowercase()));
        let added = meta(&added.expect("apply"));
        loop {
            match next(&mut watcher_events).await.expect("the watcher goes on") {
                Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) if job.metadata == added => break,
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_full_or_metadata_only_as_the_accept_header_asks() {
    let (api, client) = start().await;
    let fixture = of_kind(&cluster(), "Job").into_iter().next().expect("a Job");
    let (namespace, name) = key(&meta(&fixture));
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);

    let full = jobs.get(&name).await.expect("the Job");
    let containers: Vec<_> = full
        .spec
        .expect("a full Job has its spec")
        .template
        .spec
        .expect("pod spec")
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    let expected: Vec<_> = fixture["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| text(c, "/name"))
        .collect();
    assert_eq!(containers, expected);
    let partial = jobs.get_metadata(&name).await.expect("the Job's metadata");
    assert_eq!(partial.types.map(|t| t.kind), Some("PartialObjectMetadata".to_owned()));

    // The raw bodies: what each Accept gets.
    let raw = |path: String, accept: &'static str| {
        let client = client.clone();
        async move {
            let request = hyper::Request::get(path).header("accept", accept).body(Vec::new()).expect("a request");
            client.request::<Value>(request).await
        }
    };
    let one = format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}");
    let body = raw(one.clone(), "application/json").await.expect("full");
    assert_eq!((body["kind"].as_str(), body["spec"].is_object()), (Some("Job"), true));
    let body = raw(one.clone(), METADATA).await.expect("metadata");
    assert_eq!(body["kind"], "PartialObjectMetadata");
    assert_eq!(body["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(body.get("spec"), None);
    assert_eq!(meta(&body), meta(&fixture));
    let list = "/apis/batch/v1/jobs".to_owned();
    let body = raw(list.clone(), METADATA_LIST).await.expect("a metadata list");
    assert_eq!(body["kind"], "PartialObjectMetadataList");
    assert!(
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["kind"] == "PartialObjectMetadata" && i.get("spec").is_none())
    );
    let body = raw(list.clone(), "application/json").await.expect("a full list");
    assert_eq!(body["kind"], "JobList");
    assert!(body["items"].as_array().expect("items").iter().all(|i| i["spec"].is_object()));
    // A single object's media type for a list (and the reverse) is refused.
    let status = api_status(raw(list, METADATA).await.expect_err("406"));
    assert_eq!(status.code, 406);
    let status = api_status(raw(one, METADATA_LIST).await.expect_err("406"));
    assert_eq!(status.code, 406);

    // A watch from "0" starts with the Jobs as ADDED events, shaped alike.
    for (accept, kind) in [(METADATA, "PartialObjectMetadata"), ("application/json", "Job")] {
        let request = hyper::Request::get("/apis/batch/v1/jobs?watch=true&resourceVersion=0")
            .header("accept", accept)
            .body(Vec::new())
            .expect("a request");
        let mut events = client.request_events::<Value>(request).await.expect("a watch").boxed();
        match next(&mut events).await {
            Some(Ok(WatchEvent::Added(object))) => {
                assert_eq!(object["kind"], kind);
                assert_eq!(object.get("spec").is_some(), kind == "Job", "{object}");
            }
            other => panic!("expected an ADDED event, got {other:?}"),
        }
    }

    let accepts: Vec<_> = api.requests().into_iter().map(|r| r.is_metadata_only()).collect();
    assert_eq!(accepts[..2], [false, true], "get asks for the object, get_metadata for its metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_token_the_api_answers_401() {
    let (api, _) = start().await;
    let mut config = api.kube_config();
    config.auth_info = kube::config::AuthInfo::default();
    let jobs: Api<Job> = Api::all(kube::Client::try_from(config).expect("client"));
    let status = api_status(jobs.list_metadata(&ListParams::default()).await.expect_err("401"));
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
    assert!(!api.requests()[0].is_authenticated());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_compaction_an_old_version_is_gone() {
    let (api, client) = start().await;
    let jobs: Api<Job> = Api::all(client);
    let first = jobs.list_metadata(&ListParams::default().limit(1)).await.expect("a first page");
    let old = api.resource_version().to_string();
    api.apply(job_like(&of_kind(&cluster(), "Job")[0], "other", "other-init")).expect("apply");
    api.compact();

    let mut watch = jobs.watch_metadata(&WatchParams::default(), &old).await.expect("the watch starts").boxed();
    match next(&mut watch).await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(next(&mut watch).await.is_none(), "and the watch ends");

    let token = first.metadata.continue_.expect("a continue token");
    let status =
        api_status(jobs.list_metadata(&ListParams::default().limit(1).continue_token(&token)).await.expect_err("410"));
    assert_eq!(status.code, 410);

    // From the current version, a watch goes on.
    let now = api.resource_version().to_string();
    let mut watch = jobs.watch_metadata(&WatchParams::default(), &now).await.expect("a watch").boxed();
    let (namespace, name) = ("other", "other-init");
    api.delete("Job", Some(namespace), name).expect("delete");
    match next(&mut watch).await {
        Some(Ok(WatchEvent::Deleted(job))) => assert_eq!(job.metadata.name.as_deref(), Some(name)),
        other => panic!("expected the deletion, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_is_served_too() {
    // kube-rs offers only http/1.1; berth's own client or another may not.
    let (api, _) = start().await;
    let addr = api.url.trim_start_matches("https://").parse().expect("the API's address");
    let mut client = berth_e2e::client::Client::connect(addr, &api.ca, berth_e2e::client::Protocol::Http2)
        .await
        .expect("an h2 connection");
    let (status, body) = client.get("/api/v1/namespaces").await.expect("an answer over h2");
    assert_eq!(status, hyper::StatusCode::UNAUTHORIZED, "no token, no namespaces");
    let body: Value = serde_json::from_slice(&body).expect("a Status");
    assert_eq!((body["kind"].as_str(), body["code"].as_u64()), (Some("Status"), Some(401)));
}
