//! The layer tool behind `cargo xtask`: build, lint and publish AWS Lambda Python layers so that a
//! local build and the CodeBuild build in CI are the same build.
//!
//! Data flows one way: `buildspec`/`template` (parsed models with source positions) → `layer`
//! (the one resolution of what is built) → `lint`; `build` (prepare → execute → package) →
//! `verify` → `manifest` → `deploy`. `diagnostic` is the one type every stage reports problems
//! with; `report` renders it. Only `engine` talks to Docker; only `aws` (and what it serves) to
//! AWS.

pub mod artifacts;
pub mod aws;
pub mod build;
pub mod buildspec;
pub mod compare;
pub mod deploy;
pub mod diagnostic;
pub mod engine;
pub(crate) mod layer;
pub mod lint;
pub mod locks;
pub mod manifest;
pub(crate) mod progress;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod stack;
pub(crate) mod template;
pub mod util;
pub mod verify;
pub(crate) mod yaml;
