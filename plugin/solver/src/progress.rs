//! Progress events of a solve, and the fan-out that delivers one execution's events to every
//! solve waiting on it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::mpsc::UnboundedSender;

use crate::vertex::VertexInfo;

/// Something that happened to a vertex during a solve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When it happened.
    pub time: SystemTime,
    /// The vertex, as the receiving solve's graph names it.
    pub vertex: VertexInfo,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a vertex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The op began executing (after waiting for its inputs and an execution slot).
    Started,
    /// The result came from the cache; the op did not run. Also sent, at the end of a
    /// successful solve, for vertices that were not needed because a dependent was cached.
    Cached,
    /// The op finished and its result was recorded.
    Completed,
    /// The op failed; `error` is the message with its causes.
    Failed {
        /// The error chain, `a: b: c`.
        error: String,
    },
    /// The op was started but stopped before it finished, because no solve needed it anymore
    /// (a sibling failed, or the solves were dropped).
    Canceled,
    /// Output of the running op.
    Log {
        /// Which stream.
        stream: Stream,
        /// The bytes, as written.
        data: Vec<u8>,
    },
}

/// An output stream of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How many bytes of log output a fan-out keeps for late subscribers; older lines are dropped
/// from the replay (status events are always kept).
const LOG_HISTORY_BYTES: usize = 1 << 20;

/// Delivers events of one execution to its subscribers, each under its own vertex name; a late
/// subscriber first gets what was sent so far (the status events and the tail of the log).
#[derive(Default)]
pub(crate) struct Fanout {
    inner: Mutex<FanoutInner>,
}

#[derive(Default)]
struct FanoutInner {
    history: VecDeque<(SystemTime, EventKind)>,
    log_bytes: usize,
    subscribers: Vec<(UnboundedSender<Event>, VertexInfo)>,
}

impl Fanout {
    /// A fan-out with one subscriber (or none).
    pub(crate) fn single(tx: Option<&UnboundedSender<Event>>, vertex: &VertexInfo) -> Self {
        let fanout = Fanout::default();
        if let Some(tx) = tx {
            fanout.subscribe(tx.clone(), vertex.clone());
        }
        fanout
    }

    pub(crate) fn subscribe(&self, tx: UnboundedSender<Event>, vertex: VertexInfo) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (time, kind) in &inner.history {
            let _ = tx.send(Event {
                time: *time,
                vertex: vertex.clone(),
                kind: kind.clone(),
            });
        }
        inner.subscribers.push((tx, vertex));
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        let time = SystemTime::now();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.subscribers.retain(|(tx, vertex)| {
            tx.send(Event {
                time,
                vertex: vertex.clone(),
                kind: kind.clone(),
            })
            .is_ok()
        });
        if let EventKind::Log { data, .. } = &kind {
            inner.log_bytes += data.len();
        }
        inner.history.push_back((time, kind));
        while inner.log_bytes > LOG_HISTORY_BYTES {
            let Some(i) = inner
                .history
                .iter()
                .position(|(_, k)| matches!(k, EventKind::Log { .. }))
            else {
                break;
            };
            if let Some((_, EventKind::Log { data, .. })) = inner.history.remove(i) {
                inner.log_bytes -= data.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;

    fn vertex(name: &str) -> VertexInfo {
        VertexInfo {
            digest: format!("d-{name}"),
            name: name.into(),
        }
    }

    #[test]
    fn late_subscriber_gets_statuses_and_the_tail_of_the_log_under_its_own_name() {
        let fanout = Fanout::default();
        let (early_tx, mut early) = mpsc::unbounded_channel();
        fanout.subscribe(early_tx, vertex("early"));
        fanout.emit(EventKind::Started);
        let chunk = vec![b'x'; LOG_HISTORY_BYTES / 2 + 1];
        for _ in 0..3 {
            fanout.emit(EventKind::Log {
                stream: Stream::Stdout,
                data: chunk.clone(),
            });
        }
        let (late_tx, mut late) = mpsc::unbounded_channel();
        fanout.subscribe(late_tx, vertex("late"));
        fanout.emit(EventKind::Completed);

        let early: Vec<Event> = std::iter::from_fn(|| early.try_recv().ok()).collect();
        assert_eq!(early.len(), 5);
        assert!(early.iter().all(|e| e.vertex.name == "early"));

        let late: Vec<Event> = std::iter::from_fn(|| late.try_recv().ok()).collect();
        let kinds: Vec<&str> = late
            .iter()
            .map(|e| match e.kind {
                EventKind::Started => "started",
                EventKind::Log { .. } => "log",
                EventKind::Completed => "completed",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["started", "log", "completed"]);
        assert!(late.iter().all(|e| e.vertex.name == "late"));
    }
}
