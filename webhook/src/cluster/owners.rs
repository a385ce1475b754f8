//! What berth keeps of each owner object (Job, ReplicaSet, ...), and the
//! store it keeps it in, whose size has a ceiling.
//!
//! An owner is read for three things: its labels, by `match.owner`
//! selectors; Helm's release identity; and its own controller, to walk the
//! chain on. That is all that is kept, and the rest is dropped as the
//! object is parsed (a `last-applied-configuration` or `managedFields` is
//! skipped, never built): the uid, the namespace, the label keys some
//! loaded selector names, Helm's two annotations and the controlling
//! ownerReference. A UUID is kept in 16 bytes; strings that repeat across
//! objects (namespaces, label keys and values, release and controller
//! names) are kept once.
//!
//! At the ceiling, an object the watch brings is not kept (it is again once
//! deletions make room); a lookup that misses asks the API with one GET, as
//! it does for an owner the watch has not shown yet. The metric
//! `berth_owner_cache_at_limit` and a log line say when something was left
//! out, until every kind's next full list holds all it shows.

use super::OwnerKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A string kept once however many owners carry it.
pub type Sym = Arc<str>;

/// A uid: a UUID (what the apiserver gives every object) in 16 bytes, or
/// the text of anything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uid {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Uid {
    /// Only the canonical form (lowercase, `8-4-4-4-12`) is packed, so that
    /// two uids are equal exactly when their texts are.
    pub fn new(text: &str) -> Self {
        Self::pack(text).map_or_else(|| Self::Text(text.into()), Self::Uuid)
    }

    fn pack(text: &str) -> Option<[u8; 16]> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
            return None;
        }
        let mut digits = bytes.iter().filter(|&&b| b != b'-');
        let mut out = [0u8; 16];
        for byte in &mut out {
            let mut value = 0;
            for _ in 0..2 {
                let digit = match *digits.next()? {
                    d @ b'0'..=b'9' => d - b'0',
                    d @ b'a'..=b'f' => d - b'a' + 10,
                    _ => return None,
                };
                value = value << 4 | digit;
            }
            *byte = value;
        }
        Some(out)
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Uuid(_) => 0,
            Self::Text(text) => text.len(),
        }
    }
}

impl std::fmt::Display for Uid {
    /// The text the API wrote: a packed UUID in its canonical form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// An owner's own controller: the next link of the chain. Only kinds berth
/// follows are kept; the chain ends at any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub kind: OwnerKind,
    pub name: Sym,
    pub uid: Uid,
}

/// What berth keeps of one owner object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub namespace: Sym,
    pub controller: Option<Controller>,
    /// The labels whose keys some loaded selector names, sorted by key.
    labels: Box<[(Sym, Sym)]>,
    /// Helm's release (`namespace`, `name`), from its annotations.
    helm: Option<(Sym, Sym)>,
}

impl Owner {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| self.labels[i].1.as_ref())
    }

    /// The Helm release (`namespace`, `name`) whose install created it.
    pub fn helm_release(&self) -> Option<(&str, &str)> {
        self.helm.as_ref().map(|(namespace, name)| (namespace.as_ref(), name.as_ref()))
    }

    /// The owner `wire` describes, its strings made by `intern`.
    pub(super) fn from_wire(wire: &WireMeta, keep: &Keep, intern: &mut impl FnMut(&str) -> Sym) -> (Uid, Owner) {
        let namespace = intern(&wire.namespace);
        let labels: Box<[(Sym, Sym)]> =
            wire.labels.iter().filter(|(key, _)| keep.keeps(key)).map(|(k, v)| (intern(k), intern(v))).collect();
        let helm = wire.helm.name.as_deref().map(|name| {
            let release_namespace = wire.helm.namespace.as_deref().map_or_else(|| namespace.clone(), &mut *intern);
            (release_namespace, intern(name))
        });
        let controller = wire.controller.as_ref().and_then(|c| {
            let kind = OwnerKind::from_reference(&c.api_version, &c.kind)?;
            Some(Controller { kind, name: intern(&c.name), uid: Uid::new(&c.uid) })
        });
        (Uid::new(&wire.uid), Owner { namespace, controller, labels, helm })
    }

    /// Bytes of this owner outside its strings, as the ceiling counts them:
    /// the Arc that holds it and its slice of labels.
    fn own_bytes(&self) -> usize {
        ARC_HEADER
            + std::mem::size_of::<Owner>()
            + self.labels.len() * std::mem::size_of::<(Sym, Sym)>()
            + self.controller.as_ref().map_or(0, |c| c.uid.heap_bytes())
    }
}

/// `Arc`'s two counts.
const ARC_HEADER: usize = 16;

/// The label keys that are kept: the ones loaded selectors name, or (for a
/// `--context` file, read once) all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    All,
    Only(BTreeSet<String>),
}

impl Keep {
    fn keeps(&self, key: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(keys) => keys.contains(key),
        }
    }

    /// Whether everything `other` keeps is kept here.
    pub fn covers(&self, other: &Keep) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (Self::Only(_), Self::All) => false,
            (Self::Only(mine), Self::Only(theirs)) => theirs.is_subset(mine),
        }
    }
}

/// An object's metadata as it arrives, as far as [`Owner`] reads it. Every
/// other field (`managedFields`, every other annotation, the rest of the
/// object) is skipped unread.
#[derive(Debug, Clone, Default)]
pub struct WireMeta {
    pub uid: String,
    pub namespace: String,
    labels: super::Labels,
    helm: HelmAnnotations,
    controller: Option<super::OwnerRef>,
}

impl From<&super::Meta> for WireMeta {
    /// An object read whole (a `--context` file, a test).
    fn from(meta: &super::Meta) -> Self {
        let annotation = |key: &str| meta.annotations.get(key).cloned();
        Self {
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone(),
            helm: HelmAnnotations {
                name: annotation(super::HELM_RELEASE_NAME),
                namespace: annotation(super::HELM_RELEASE_NAMESPACE),
            },
            controller: meta.controller.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct HelmAnnotations {
    name: Option<String>,
    namespace: Option<String>,
}

/// One owner object of kind `K` as the watch and the GET read it: only
/// [`WireMeta`]. As a kube-rs resource it asks for metadata only
/// (`PartialObjectMetadata`), like `PartialObjectMeta<K>`, but is not one:
/// that builds a whole `ObjectMeta` of each object, its largest
/// annotations and `managedFields` included.
pub struct Wire<K> {
    pub meta: WireMeta,
    /// The resourceVersion alone, for kube-rs's watcher to resume from.
    object_meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Wire<K> {
    fn clone(&self) -> Self {
        Self { meta: self.meta.clone(), object_meta: self.object_meta.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Wire<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.meta.fmt(f)
    }
}

impl<K: kube::Resource> kube::Resource for Wire<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn metadata_api() -> bool {
        true
    }

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.object_meta
    }

    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.object_meta
    }
}

impl<'de, K> serde::Deserialize<'de> for Wire<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Object {
            #[serde(default, deserialize_with = "super::null_as_default")]
            metadata: super::MapOnly<View>,
        }
        #[derive(Default, serde::Deserialize)]
        #[serde(default, rename_all = "camelCase")]
        struct View {
            #[serde(deserialize_with = "super::null_as_default")]
            uid: String,
            #[serde(deserialize_with = "super::null_as_default")]
            namespace: String,
            #[serde(deserialize_with = "super::null_as_default")]
            resource_version: String,
            #[serde(deserialize_with = "super::null_as_default")]
            labels: super::Labels,
            #[serde(deserialize_with = "super::null_as_default")]
            annotations: HelmOnly,
            #[serde(deserialize_with = "super::null_as_default")]
            owner_references: Vec<super::MapOnly<super::OwnerView>>,
        }
        let Object { metadata: super::MapOnly(view) } = serde::Deserialize::deserialize(deserializer)?;
        let controller =
            view.owner_references.into_iter().map(|super::MapOnly(r)| r).find(|r| r.controller == Some(true));
        let object_meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            resource_version: Some(view.resource_version).filter(|v| !v.is_empty()),
            ..Default::default()
        };
        let meta = WireMeta {
            uid: view.uid,
            namespace: view.namespace,
            labels: view.labels,
            helm: view.annotations.0,
            controller: controller.map(|r| super::OwnerRef {
                api_version: r.api_version,
                kind: r.kind,
                name: r.name,
                uid: r.uid,
            }),
        };
        Ok(Wire { meta, object_meta, kind: PhantomData })
    }
}

/// `annotations`, keeping Helm's two and skipping every other value unread.
#[derive(Default)]
struct HelmOnly(HelmAnnotations);

impl<'de> serde::Deserialize<'de> for HelmOnly {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        enum Key {
            Name,
            Namespace,
            Other,
        }
        impl<'de> serde::Deserialize<'de> for Key {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = Key;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an annotation key")
                    }
                    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                        Ok(match key {
                            super::HELM_RELEASE_NAME => Key::Name,
                            super::HELM_RELEASE_NAMESPACE => Key::Namespace,
                            _ => Key::Other,
                        })
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = HelmOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<HelmOnly, A::Error> {
                let mut helm = HelmAnnotations::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Name => helm.name = Some(map.next_value()?),
                        Key::Namespace => helm.namespace = Some(map.next_value()?),
                        Key::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(HelmOnly(helm))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `cache`, or `api` (a GET).
    pub source: &'static str,
}

/// The owner cache's metrics, registered with the server's.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub entries: Gauge,
    pub bytes: Gauge,
    pub limit: Gauge,
    pub at_limit: Gauge,
    pub left_out: Counter,
    pub lookups: Family<LookupLabels, Counter>,
}

impl CacheStats {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("owner_cache_entries", "Owner objects held in memory", self.entries.clone());
        registry.register(
            "owner_cache_bytes",
            "Memory the owner cache holds, as berth accounts it",
            self.bytes.clone(),
        );
        registry.register(
            "owner_cache_limit_bytes",
            "The owner cache's ceiling (--owner-cache-limit)",
            self.limit.clone(),
        );
        registry.register(
            "owner_cache_at_limit",
            "1 while owners were left out at the ceiling since the last full list: those are looked up by GET",
            self.at_limit.clone(),
        );
        registry.register(
            "owner_cache_left_out",
            "Owner objects from the Kubernetes API not kept, the cache being at its ceiling",
            self.left_out.clone(),
        );
        registry.register(
            "owner_lookups",
            "Owner lookups by where they were answered: the cache, or the API (one GET)",
            self.lookups.clone(),
        );
    }

    pub(super) fn looked_up(&self, source: &'static str) {
        self.lookups.get_or_create(&LookupLabels { source }).inc();
    }
}

/// What the owner stores of one configuration share: the ceiling and the
/// bytes held under it, the label keys kept, and the strings kept once.
#[derive(Debug)]
pub struct Shared {
    limit: usize,
    used: AtomicUsize,
    pub(super) keep: Keep,
    strings: Mutex<Strings>,
    stats: CacheStats,
    /// Whether something was left out since a store's last full list.
    at_limit: AtomicBool,
    /// How many of the stores left something out since their last full
    /// list: the flag clears only when none has, not when one kind's list
    /// (an empty one, say) completes while another's owners are missing.
    stores_left_out: AtomicUsize,
}

#[derive(Debug, Default)]
struct Strings {
    set: HashSet<Sym>,
    bytes: usize,
    /// Owners removed or left out since the last sweep of unused strings.
    released: usize,
}

/// Sweep unused strings after this many owners are removed or left out.
const SWEEP_AFTER: usize = 4096;
/// What one kept string costs besides its text: its Arc's counts and its
/// slot in the set.
const STRING_OVERHEAD: usize = ARC_HEADER + 24;

impl Shared {
    pub fn new(limit: usize, keep: Keep, stats: CacheStats) -> Arc<Self> {
        stats.limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            keep,
            strings: Mutex::new(Strings::default()),
            stats,
            at_limit: AtomicBool::new(false),
            stores_left_out: AtomicUsize::new(0),
        })
    }

    fn intern(strings: &mut Strings, text: &str) -> Sym {
        if let Some(sym) = strings.set.get(text) {
            return sym.clone();
        }
        let sym: Sym = Arc::from(text);
        strings.bytes += text.len() + STRING_OVERHEAD;
        strings.set.insert(sym.clone());
        sym
    }

    /// Bytes held: the stores' (given as `delta` to what was counted) and
    /// the strings'.
    fn bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed) + self.strings.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    fn release(&self, count: usize) {
        let mut strings = self.strings.lock().unwrap_or_else(|p| p.into_inner());
        strings.released += count;
        if strings.released >= SWEEP_AFTER {
            Self::sweep(&mut strings);
        }
    }

    fn sweep(strings: &mut Strings) {
        strings.set.retain(|sym| Arc::strong_count(sym) > 1);
        strings.bytes = strings.set.iter().map(|s| s.len() + STRING_OVERHEAD).sum();
        strings.released = 0;
    }

    fn publish(&self, entries_delta: i64) {
        self.stats.entries.inc_by(entries_delta);
        self.stats.bytes.set(i64::try_from(self.bytes()).unwrap_or(i64::MAX));
    }

    /// The most `wire` can cost if none of its strings is kept yet.
    fn worst_case(wire: &WireMeta, keep: &Keep) -> usize {
        let string = |s: &str| s.len() + STRING_OVERHEAD;
        let labels: usize = wire
            .labels
            .iter()
            .filter(|(k, _)| keep.keeps(k))
            .map(|(k, v)| string(k) + string(v) + std::mem::size_of::<(Sym, Sym)>())
            .sum();
        let helm = wire.helm.name.as_deref().map_or(0, string) + wire.helm.namespace.as_deref().map_or(0, string);
        let controller = wire.controller.as_ref().map_or(0, |c| string(&c.name) + c.uid.len());
        SLOT + ARC_HEADER
            + std::mem::size_of::<Owner>()
            + string(&wire.namespace)
            + labels
            + helm
            + controller
            + wire.uid.len()
    }
}

/// One slot of a store's table: the key, the owner, and the list it was
/// last seen in; plus hashbrown's control byte.
const SLOT: usize = std::mem::size_of::<(Uid, Slot)>() + 1;

#[derive(Debug)]
struct Slot {
    owner: Arc<Owner>,
    /// The full list (or watch after it) that last showed this owner:
    /// after a relist, owners an older one showed are gone.
    generation: u32,
}

/// One kind's owners by uid, and whether its first full list is in.
#[derive(Debug)]
pub(crate) struct OwnerStore {
    state: RwLock<State>,
    synced: AtomicBool,
    /// Set when the sync deadline passed first: `/readyz` stops waiting,
    /// and what is not here yet is asked for.
    serving_unsynced: AtomicBool,
    /// Whether this store counts in `Shared::stores_left_out`.
    counted_left_out: AtomicBool,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct State {
    items: HashMap<Uid, Slot>,
    generation: u32,
    /// Bytes of `items` as counted into the shared total.
    bytes: usize,
    /// Whether an owner was left out since the current list began.
    left_out: bool,
}

impl State {
    fn bytes(&self) -> usize {
        self.items.capacity() * SLOT
            + self.items.iter().map(|(uid, slot)| uid.heap_bytes() + slot.owner.own_bytes()).sum::<usize>()
    }
}

impl OwnerStore {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            state: RwLock::new(State::default()),
            synced: AtomicBool::new(false),
            serving_unsynced: AtomicBool::new(false),
            counted_left_out: AtomicBool::new(false),
            shared,
        }
    }

    /// The owners of a `--context` file: all labels kept, no ceiling.
    pub fn fixed(owners: impl IntoIterator<Item = WireMeta>) -> Self {
        let store = Self::new(Shared::new(usize::MAX, Keep::All, CacheStats::default()));
        store.begin_list();
        for owner in owners {
            store.apply(&owner);
        }
        store.end_list();
        store
    }

    pub fn get(&self, uid: &Uid) -> Option<Arc<Owner>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.items.get(uid).map(|slot| slot.owner.clone())
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Synced, or serving by GET since the sync deadline passed.
    pub fn ready(&self) -> bool {
        self.synced() || self.serving_unsynced.load(Ordering::Acquire)
    }

    /// The sync deadline passed; returns whether the store had not synced.
    pub fn deadline_passed(&self) -> bool {
        !self.synced() && !self.serving_unsynced.swap(true, Ordering::AcqRel)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|p| p.into_inner()).items.len()
    }

    /// A full list begins: what it does not show is gone once it ends.
    pub fn begin_list(&self) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.generation = state.generation.wrapping_add(1);
        state.left_out = false;
    }

    /// The list is complete: drop what it did not show. The count kept.
    pub fn end_list(&self) -> usize {
        let (removed, count, left_out) = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let generation = state.generation;
            let before = state.items.len();
            state.items.retain(|_, slot| slot.generation == generation);
            let removed = before - state.items.len();
            self.recount(&mut state);
            (removed, state.items.len(), state.left_out)
        };
        self.synced.store(true, Ordering::Release);
        {
            let mut strings = self.shared.strings.lock().unwrap_or_else(|p| p.into_inner());
            Shared::sweep(&mut strings);
        }
        if !left_out && self.counted_left_out.swap(false, Ordering::AcqRel) {
            self.shared.stores_left_out.fetch_sub(1, Ordering::AcqRel);
        }
        let none_left_out = self.shared.stores_left_out.load(Ordering::Acquire) == 0;
        if none_left_out && self.shared.at_limit.swap(false, Ordering::AcqRel) {
            self.shared.stats.at_limit.set(0);
            tracing::info!("the owner cache holds every owner again, under its ceiling");
        }
        self.shared.publish(-(removed as i64));
        count
    }

    /// Count `state` into the shared total again (after it changed shape).
    fn recount(&self, state: &mut State) {
        let bytes = state.bytes();
        if bytes >= state.bytes {
            self.shared.used.fetch_add(bytes - state.bytes, Ordering::Relaxed);
        } else {
            self.shared.used.fetch_sub(state.bytes - bytes, Ordering::Relaxed);
        }
        state.bytes = bytes;
    }

    /// An owner listed, added or changed.
    pub fn apply(&self, wire: &WireMeta) {
        let shared = &self.shared;
        let uid = Uid::new(&wire.uid);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let generation = state.generation;
        let known = state.items.contains_key(&uid);
        // Growing the table moves every slot: count the new table whole.
        let growth = if !known && state.items.len() == state.items.capacity() {
            state.items.capacity().max(3) * SLOT
        } else {
            0
        };
        // An update frees what the owner held before.
        let freed = state.items.get(&uid).map_or(0, |slot| slot.owner.own_bytes());
        let fits =
            shared.bytes() + Shared::worst_case(wire, &shared.keep) + growth <= shared.limit.saturating_add(freed);
        if !fits {
            // A known owner that cannot be updated must not be answered
            // from its old state: it is dropped, and looked up when needed.
            let dropped = state.items.remove(&uid);
            if let Some(slot) = &dropped {
                let cost = slot.owner.own_bytes() + uid.heap_bytes();
                state.bytes -= cost;
                shared.used.fetch_sub(cost, Ordering::Relaxed);
            }
            state.left_out = true;
            drop(state);
            self.left_out(dropped.is_some());
            return;
        }
        let owner = {
            let mut strings = shared.strings.lock().unwrap_or_else(|p| p.into_inner());
            let (_, owner) = Owner::from_wire(wire, &shared.keep, &mut |s| Shared::intern(&mut strings, s));
            owner
        };
        // An update keeps the key already in the table: only a new owner
        // adds its uid's bytes.
        let cost = owner.own_bytes() + if known { 0 } else { uid.heap_bytes() };
        let capacity = state.items.capacity();
        let previous = state.items.insert(uid, Slot { owner: Arc::new(owner), generation });
        let old_cost = previous.as_ref().map_or(0, |slot| slot.owner.own_bytes());
        let table = (state.items.capacity() - capacity) * SLOT;
        state.bytes = state.bytes + cost + table - old_cost;
        shared.used.fetch_add(cost + table, Ordering::Relaxed);
        shared.used.fetch_sub(old_cost, Ordering::Relaxed);
        drop(state);
        if previous.is_some() {
            shared.release(1);
        }
        shared.publish(i64::from(previous.is_none()));
    }

    fn left_out(&self, dropped: bool) {
        let shared = &self.shared;
        shared.stats.left_out.inc();
        if !self.counted_left_out.swap(true, Ordering::AcqRel) {
            shared.stores_left_out.fetch_add(1, Ordering::AcqRel);
        }
        if !shared.at_limit.swap(true, Ordering::AcqRel) {
            shared.stats.at_limit.set(1);
            tracing::warn!(
                limit_bytes = shared.limit,
                "the owner cache is at its ceiling (--owner-cache-limit): owners it cannot hold are looked up in the Kubernetes API, one GET each, when a review needs them"
            );
        }
        shared.release(1);
        shared.publish(if dropped { -1 } else { 0 });
    }

    /// An owner deleted.
    pub fn remove(&self, uid: &str) {
        let uid = Uid::new(uid);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let Some(slot) = state.items.remove(&uid) else { return };
        let cost = slot.owner.own_bytes() + uid.heap_bytes();
        state.bytes -= cost;
        self.shared.used.fetch_sub(cost, Ordering::Relaxed);
        drop(state);
        drop(slot);
        self.shared.release(1);
        self.shared.publish(-1);
    }
}

impl Drop for OwnerStore {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        self.shared.used.fetch_sub(state.bytes, Ordering::Relaxed);
        self.shared.stats.entries.dec_by(state.items.len() as i64);
    }
}

/// The owners one GET found, built as the store builds them, its strings
/// not shared (it is not kept).
pub(super) fn looked_up(wire: &WireMeta) -> (Uid, Arc<Owner>) {
    let (uid, owner) = Owner::from_wire(wire, &Keep::All, &mut |s| Arc::from(s));
    (uid, Arc::new(owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(uid: &str, labels: &[(&str, &str)]) -> WireMeta {
        let text = serde_json::json!({
            "metadata": {
                "name": format!("rs-{uid}"), "namespace": "pulsar", "uid": uid, "resourceVersion": "7",
                "labels": labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                "annotations": {
                    "meta.helm.sh/release-name": "pulsar",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                },
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}}],
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n"},
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "broker", "uid": "d-1", "controller": true},
                ],
            },
            "spec": {"replicas": 3},
        });
        serde_json::from_value::<Wire<k8s_openapi::api::apps::v1::ReplicaSet>>(text).unwrap().meta
    }

    #[test]
    fn canonical_uuids_are_packed_and_anything_else_kept_as_text() {
        let uuid = "4a1f0000-0000-4000-8000-00000000002a";
        assert!(matches!(Uid::new(uuid), Uid::Uuid(_)));
        assert_ne!(Uid::new(uuid), Uid::new("4a1f0000-0000-4000-8000-00000000002b"));
        assert_eq!(Uid::new(uuid), Uid::new(uuid));
        for other in ["j-uid", "4A1F0000-0000-4000-8000-00000000002A", "4a1f0000-0000-4000-8000-00000000002"] {
            assert_eq!(Uid::new(other), Uid::Text(other.into()));
            assert_eq!(Uid::new(other).to_string(), other);
        }
        assert_eq!(Uid::new(uuid).to_string(), uuid, "a packed uid prints as the API wrote it");
    }

    #[test]
    fn only_what_selectors_read_is_kept() {
        let keep = Keep::Only(["app".to_owned()].into());
        let shared = Shared::new(usize::MAX, keep, CacheStats::default());
        let store = OwnerStore::new(shared);
        store.begin_list();
        store.apply(&wire("u1", &[("app", "pulsar"), ("pod-template-hash", "abc")]));
        store.end_list();
        let owner = store.get(&Uid::new("u1")).unwrap();
        assert_eq!(owner.label("app"), Some("pulsar"));
        assert_eq!(owner.label("pod-template-hash"), None, "no selector names it");
        assert_eq!(owner.helm_release(), Some(("pulsar", "pulsar")));
        let controller = owner.controller.as_ref().unwrap();
        assert_eq!((controller.kind, controller.name.as_ref()), (OwnerKind::Deployment, "broker"));
    }

    #[test]
    fn a_relist_drops_what_it_did_not_show() {
        let store = OwnerStore::new(Shared::new(usize::MAX, Keep::All, CacheStats::default()));
        store.begin_list();
        store.apply(&wire("gone", &[]));
        store.apply(&wire("stays", &[]));
        store.end_list();
        store.begin_list();
        store.apply(&wire("stays", &[]));
        store.apply(&wire("new", &[]));
        assert_eq!(store.end_list(), 2);
        assert!(store.get(&Uid::new("gone")).is_none());
        assert!(store.get(&Uid::new("new")).is_some());
    }

    #[test]
    fn past_the_ceiling_owners_are_kept_only_while_there_is_room_and_the_bytes_stay_under_it() {
        let stats = CacheStats::default();
        let limit = 8 * 1024;
        let store = OwnerStore::new(Shared::new(limit, Keep::All, stats.clone()));
        store.begin_list();
        for i in 0..1000 {
            store.apply(&wire(&format!("4a1f0000-0000-4000-8000-{i:012}"), &[("app", "pulsar")]));
            assert!(store.shared.bytes() <= limit, "{} bytes after {i}", store.shared.bytes());
        }
        store.end_list();
        let kept = store.len();
        assert!(kept > 0 && kept < 1000, "{kept} kept");
        assert_eq!(stats.left_out.get() as usize, 1000 - kept);
        assert_eq!(stats.at_limit.get(), 1);
        assert_eq!(stats.entries.get() as usize, kept);
        // Deleting makes room for the next one.
        store.remove("4a1f0000-0000-4000-8000-000000000000");
        store.apply(&wire("4a1f0000-0000-4000-8000-000000009999", &[("app", "pulsar")]));
        assert!(store.get(&Uid::new("4a1f0000-0000-4000-8000-000000009999")).is_some());
    }
}
