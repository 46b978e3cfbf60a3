//! The integration tests, in one binary: the heavy dependencies (the AWS SDK, bollard) are linked
//! once instead of once per test file. Each module is one area; `support` finds the services the
//! Docker- and moto-backed tests need (`bash scripts/test.sh` starts them).

mod artifacts;
mod build_layer;
mod deploy;
mod docker_smoke;
mod driver_semantics;
mod engine_build;
mod fidelity;
mod lint_cli;
mod lint_corpus;
mod matrix;
mod moto_smoke;
mod no_panic;
mod remote;
mod security;
mod stack;
mod support;
mod tidy;
mod verify;
