//! oxkit's Dockerfile frontend (BuildKit's `dockerfile.v0`): parses a Dockerfile into typed
//! instructions ([`parse`], [`instruction`]), expands variables with Docker's rules ([`shell`]),
//! and converts the stages the target needs into an LLB build definition plus the image config
//! the exporter writes ([`convert`]).

mod convert;
mod error;
pub mod instruction;
mod parse;
pub mod shell;

pub use convert::{convert, ConvertOptions, Converted, NoCache};
pub use error::DockerfileError;
pub use parse::{csv_fields, parse};
