//! The control-plane suites' cluster, by hand: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler from `.ci/bin`, eight nodes, the
//! StorageClasses and the minimal kubelet; with `--berth`, berth installed
//! with its chart. It prints the kubeconfig and runs until interrupted;
//! everything it started goes with it. tests/control-plane/README.md.

use berth_e2e::control_plane::ControlPlane;
use berth_e2e::control_plane::berth::Berth;
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Start the e2e control plane, print its kubeconfig, and run until interrupted")]
struct Args {
    /// Also `helm install berth deploy/chart`, its pods run by this berth
    /// binary (e.g. target/debug/berth-e2e-server or target/release/berth).
    #[arg(long, value_name = "BERTH_BINARY")]
    berth: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let plane = ControlPlane::shared();
    if let Some(binary) = args.berth {
        Berth::install(plane, std::path::absolute(&binary).unwrap_or(binary));
        eprintln!(
            "berth is installed in namespace berth-system; opt a namespace in with: kubectl label namespace NAME berth.dev/enabled=true"
        );
    }
    eprintln!("logs: {}", plane.dir.display());
    println!("export KUBECONFIG={}", plane.kubeconfig.display());
    loop {
        std::thread::park();
    }
}
