//! The solver: a generic DAG executor with content-addressed caching. It runs a graph of
//! [`Vertex`]es whose [`Op`]s are opaque, computes a [`CacheKey`] per vertex, reuses recorded
//! results through a [`CacheStore`] and a [`ResultLoader`], and reports [`Event`]s per solve.
//! It knows nothing of containerd or protobuf: the daemon's ops adapt the world to [`Op`].
//!
//! ```
//! use std::{any::Any, sync::Arc};
//! use oxkit_solver::*;
//!
//! #[derive(Debug)]
//! struct Text(String);
//! impl Output for Text {
//!     fn id(&self) -> &str { &self.0 }
//!     fn as_any(&self) -> &dyn Any { self }
//! }
//!
//! /// Produces its text; its cache map is the text, so equal texts share a result.
//! struct Echo(String);
//! #[oxkit_solver::async_trait]
//! impl Op for Echo {
//!     async fn cache_map(&self, _: &OpContext) -> Result<CacheMap, OpError> {
//!         Ok(CacheMap::new(format!("echo:{}", self.0)))
//!     }
//!     async fn exec(&self, ctx: &OpContext, _: Vec<OutputRef>) -> Result<Vec<OutputRef>, OpError> {
//!         ctx.log(Stream::Stdout, self.0.clone());
//!         Ok(vec![Arc::new(Text(self.0.clone()))])
//!     }
//! }
//!
//! /// Outputs are their ids here; a real worker would look up a snapshot.
//! struct Loader;
//! #[oxkit_solver::async_trait]
//! impl ResultLoader for Loader {
//!     async fn load(&self, id: &str) -> Result<Option<OutputRef>, OpError> {
//!         Ok(Some(Arc::new(Text(id.to_owned()))))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let solver = Solver::new(Arc::new(MemoryCacheStore::new()), Arc::new(Loader), SolverConfig::default());
//! let hello = Arc::new(Vertex::new("sha256:1234", "echo hello", Arc::new(Echo("hello".into()))));
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let options = SolveOptions { progress: Some(tx), ..Default::default() };
//! let output = solver.solve(&Edge::new(hello, 0), options).await.unwrap();
//! assert_eq!(output.id(), "hello");
//! assert_eq!(rx.recv().await.unwrap().kind, EventKind::Started);
//! # });
//! ```

mod cache;
mod cachekey;
mod error;
mod op;
mod progress;
mod remote;
mod solver;
mod vertex;

/// The attribute for implementing [`Op`] and [`ResultLoader`] (`#[oxkit_solver::async_trait]`).
pub use async_trait::async_trait;
pub use cache::{CacheRecord, CacheStore, MemoryCacheStore, RedbCacheStore};
pub use cachekey::CacheKey;
pub use error::{CacheError, OpError, SolveError};
pub use op::{Attachment, CacheMap, InputKey, Op, OpContext, Output, OutputRef, ResultLoader};
pub use progress::{Event, EventKind, Stream};
pub use remote::{KeyedRecord, RemoteCache, RemoteRef};
pub use solver::{SolveOptions, Solver, SolverConfig};
pub use vertex::{Edge, Vertex, VertexInfo};
