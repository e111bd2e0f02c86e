//! siteplan: declarative plan/apply for virtual labs.
//!
//! A plan file (kcli's format) is loaded by `manifest`, turned into a dependency graph by `graph`,
//! and driven from the command line by `cli`. See ARCHITECTURE.md for the map.

pub mod apply;
pub mod cli;
pub mod cloudinit;
pub mod diagnostics;
pub mod files;
pub mod generate;
pub mod graph;
pub mod manifest;
pub mod memory;
pub mod ops;
pub mod picture;
pub mod placement;
pub mod plan;
pub mod provider;
pub mod registry;
pub mod secrets;
