//! Shared code of the fuzz targets: the CLI modules they exercise and the independent readers
//! their properties compare the CLI's output with.
//!
//! `exuvia unit` and `exuvia lint` live in the `exuvia` binary, which no crate can depend on,
//! so their source files are compiled here a second time, at the crate root as in the binary
//! (`lint` refers to `crate::unit`). Their templates come through `askama.toml`.

#[allow(dead_code, clippy::all)]
#[path = "../../src/bin/exuvia/unit/mod.rs"]
pub mod unit;

#[allow(dead_code, clippy::all)]
#[path = "../../src/bin/exuvia/lint/mod.rs"]
pub mod lint;

pub mod exec_line;
pub mod input;
pub mod known_open;
pub mod lint_check;
pub mod nix;
pub mod spec_gen;
pub mod systemd_ini;
pub mod unit_check;
pub mod unit_values;
