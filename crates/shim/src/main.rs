//! `containerd-shim-aos-v1`: aosd's containerd shim. One process serves a group of tasks
//! (those whose spec carries the same `io.containerd.runc.v2.group` annotation, as with
//! containerd's runc shim), runs them with runc, and writes their stdout and stderr to aosd's
//! rotating logs itself, so a task costs no shim and no logger process of its own.
//! containerd runs it by path (`[runtimes.container] shim = "/…/containerd-shim-aos-v1"`).

mod cgroup;
mod container;
mod exits;
mod process;
mod rpc;
mod runc;
mod service;
mod stdio;
mod task;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    containerd_shim::asynchronous::run::<service::Process>("io.containerd.aos.v1", None).await;
}
