//! The test's own network: a bridge on the host holding the control plane's
//! address, and one network namespace per pod that berth runs as, on a
//! veth into the bridge.
//!
//! kube-apiserver reaches a webhook's Service through its EndpointSlice
//! (`--enable-aggregator-routing`), whose addresses may not be loopback; and
//! a ClusterIP is never routed (no kube-proxy). A namespace per pod gives
//! each berth its own non-loopback address, as a pod network does, and
//! lets the chart's `--listen=0.0.0.0:8443` mean what it means in a pod.

use std::net::Ipv4Addr;
use std::process::Command;

pub struct Network {
    tag: String,
    subnet: u8,
    bridge: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output =
        Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e} (is iproute2 installed?)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

impl Network {
    /// Names carry this process's id, so runs side by side do not meet, and
    /// a dead run's leftovers are recognised and removed.
    pub fn new() -> Result<Network, String> {
        remove_stale();
        let pid = std::process::id();
        // 10.251.0.0/16 is outside the service range (10.96.0.0/16) and the
        // pod addresses the minimal kubelet hands out (10.244.0.0/16).
        let subnet = u8::try_from(20 + pid % 230).expect("below 250");
        let network = Network { tag: format!("{pid}"), subnet, bridge: format!("berth-br{pid}") };
        ip(&["link", "add", &network.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", network.host()), "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        Ok(network)
    }

    /// The host's address on the bridge: the control plane listens here.
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 251, self.subnet, 1)
    }

    fn netns(&self, slot: u8) -> String {
        format!("berth-e2e-{}-{slot}", self.tag)
    }

    /// A pod's namespace (made once per slot, reused when the pod comes
    /// back): its name for `ip netns exec`, and its address.
    pub fn pod(&self, slot: u8) -> Result<(String, Ipv4Addr), String> {
        let netns = self.netns(slot);
        let address = Ipv4Addr::new(10, 251, self.subnet, 10 + slot);
        if std::path::Path::new("/run/netns").join(&netns).exists() {
            return Ok((netns, address));
        }
        let host_end = format!("bv{}-{slot}", self.tag);
        ip(&["netns", "add", &netns])?;
        ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        ip(&["link", "set", &host_end, "master", &self.bridge])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok((netns, address))
    }

    /// What the watchdog runs when this process is gone.
    pub fn cleanup_script(&self) -> String {
        format!(
            "for ns in $(ip netns list | awk '{{print $1}}' | grep '^berth-e2e-{tag}-'); do ip netns del \"$ns\"; done; ip link del {bridge} 2>/dev/null",
            tag = self.tag,
            bridge = self.bridge
        )
    }
}

/// Namespaces and bridges of runs whose process is gone (killed before its
/// watchdog could clean up, or a machine where it was itself killed).
fn remove_stale() {
    let alive = |pid: &str| std::path::Path::new("/proc").join(pid).exists();
    let list =
        Command::new("ip").args(["netns", "list"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for name in list.unwrap_or_default().lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(pid) = name.strip_prefix("berth-e2e-").and_then(|rest| rest.split('-').next())
            && !alive(pid)
        {
            let _ = ip(&["netns", "del", name]);
        }
    }
    let links = Command::new("ip").args(["-o", "link", "show", "type", "bridge"]).output();
    let links = links.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for name in links.lines().filter_map(|l| l.split(':').nth(1)).map(str::trim) {
        if let Some(pid) = name.strip_prefix("berth-br")
            && !alive(pid)
        {
            let _ = ip(&["link", "del", name]);
        }
    }
}
