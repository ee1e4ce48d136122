//! [`Step`]: a progress step of the daemon's own — an export, a cache import or export — shown
//! to the client like an op's vertex (started, completed or failed, with log lines).

use crate::proto;

use super::Events;

/// A progress step of the daemon's own (an export, a cache import), not an op's.
pub(super) struct Step {
    digest: String,
    name: String,
}

impl Step {
    pub(super) fn new(digest: impl Into<String>, name: impl Into<String>) -> Self {
        Step {
            digest: digest.into(),
            name: name.into(),
        }
    }

    async fn status(&self, tx: &Events, state: proto::vertex_status::State, error: &str) {
        let event = proto::solve_event::Event::Vertex(proto::VertexStatus {
            digest: self.digest.clone(),
            name: self.name.clone(),
            state: state as i32,
            time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            error: error.to_owned(),
        });
        let _ = tx.send(Ok(event.into())).await;
    }

    pub(super) async fn started(&self, tx: &Events) {
        self.status(tx, proto::vertex_status::State::Started, "")
            .await
    }

    pub(super) async fn completed(&self, tx: &Events) {
        self.status(tx, proto::vertex_status::State::Completed, "")
            .await
    }

    pub(super) async fn failed(&self, tx: &Events, error: &str) {
        self.status(tx, proto::vertex_status::State::Failed, error)
            .await
    }

    /// A line of the step's output, best effort: a full channel or a client that went away
    /// drops it.
    pub(super) fn log(&self, tx: &Events, line: String) {
        let log = proto::solve_event::Event::Log(proto::VertexLog {
            digest: self.digest.clone(),
            stream: 2,
            data: line.into_bytes(),
            time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
        });
        let _ = tx.try_send(Ok(log.into()));
    }
}
