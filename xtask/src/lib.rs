//! The layer tool behind `cargo xtask`: build, lint and publish AWS Lambda Python layers so that a
//! local build and the CodeBuild build in CI are the same build.
//!
//! Data flows one way: `buildspec`/`template` (parsed models with source positions) → `lint` →
//! (later: plan → engine → artifacts → verify → zip → publish). `diagnostic` is the one type every
//! stage reports problems with; `report` renders it.

pub mod artifacts;
pub mod aws;
pub mod build;
pub mod buildspec;
pub mod deploy;
pub mod diagnostic;
pub mod engine;
pub mod lint;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod template;
pub mod util;
pub mod verify;
pub mod yaml;
