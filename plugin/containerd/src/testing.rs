//! Test support for crates without an async runtime of their own (the integration tests).

use std::future::Future;

/// Runs `future` to completion on a fresh current-thread tokio runtime (with I/O and timers), as the
/// client's calls need.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
        .block_on(future)
}
