//! Every integration test, in one binary: the `plan` binary driven end to end (`harness`
//! builds each run), the provider interface on the sandbox and a real libvirtd, and the planner
//! on the cases of `tests/plans/`.

mod harness;

mod adopt;
mod aws;
mod cli;
mod concurrency;
mod crash;
mod day_two;
mod file_access;
mod generate;
mod groups;
mod guests;
mod identity;
mod kcli;
mod kube_api;
mod kube_real;
mod kubevirt;
mod lab_snapshots;
mod lifecycle;
mod picture;
mod planner;
mod provider;
mod providers;
mod remote;
mod robustness;
mod secrets;
mod validation;
