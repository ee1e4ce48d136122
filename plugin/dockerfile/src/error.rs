//! The one error type of the frontend: what is wrong, and where in the Dockerfile.

use std::fmt;

use crate::instruction::Pos;

/// A Dockerfile that cannot be parsed or built: the file, the line and column, the offending
/// line as written, and what was expected.
///
/// Displayed as BuildKit users expect to read it:
///
/// ```text
/// Dockerfile:3:1: unknown instruction: FOO
///   3 | FOO bar
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    /// The Dockerfile's name as the user gave it (`Dockerfile`, `build/app.Dockerfile`).
    pub file: String,
    /// Where, if the error belongs to a place in the file (an unknown `--target` does not).
    pub pos: Option<Pos>,
    /// The offending line as written (empty without `pos`).
    pub line: String,
    /// What is wrong, and what was expected.
    pub message: String,
}

impl DockerfileError {
    /// An error at `pos` of `file`, quoting `line`.
    pub fn at(file: &str, pos: Pos, line: &str, message: impl Into<String>) -> Self {
        DockerfileError {
            file: file.into(),
            pos: Some(pos),
            line: line.into(),
            message: message.into(),
        }
    }

    /// An error about the whole file or the build's options.
    pub fn general(file: &str, message: impl Into<String>) -> Self {
        DockerfileError {
            file: file.into(),
            pos: None,
            line: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.file, pos.line, pos.column, self.message
                )?;
                if !self.line.is_empty() {
                    write!(f, "\n  {} | {}", pos.line, self.line)?;
                }
                Ok(())
            }
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for DockerfileError {}
