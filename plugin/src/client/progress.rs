//! Showing a build's progress: `plain` lines (as `buildctl --progress=plain`), a redrawn `tty`
//! view with timers and the live output of running steps, or `rawjson` events.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Progress, VertexState};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, `plain` otherwise.
    Auto,
    /// A redrawn view.
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per event.
    RawJson,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "tty" => Ok(ProgressMode::Tty),
            "plain" => Ok(ProgressMode::Plain),
            "rawjson" => Ok(ProgressMode::RawJson),
            other => Err(format!(
                "unknown progress mode {other:?}; expected auto, tty, plain or rawjson"
            )),
        }
    }
}

/// How many lines of a running step's output the tty view keeps.
const TTY_LOG_LINES: usize = 6;

struct Vertex {
    number: usize,
    name: String,
    state: VertexState,
    started: Option<Instant>,
    took: Option<Duration>,
    error: String,
    tail: VecDeque<String>,
    partial: String,
}

/// Renders progress events to a writer (stderr in `oxctl`).
pub struct ProgressPrinter<W: Write> {
    out: W,
    mode: ProgressMode,
    vertices: BTreeMap<String, Vertex>,
    order: Vec<String>,
    /// The definition's vertices, inputs before users: the tty view lists steps in this order
    /// (not in the order events come, which for cached steps is from the result backwards) and
    /// counts them all.
    planned: Vec<String>,
    /// Output of vertices not seen yet (a local source logs its transfer while its cache key
    /// is computed, before it starts or is cached), shown once they are.
    early_logs: BTreeMap<String, Vec<u8>>,
    started: Instant,
    drawn_lines: usize,
}

impl<W: Write> ProgressPrinter<W> {
    /// A printer in `mode`; `Auto` must be resolved by the caller (it knows the terminal).
    pub fn new(out: W, mode: ProgressMode) -> Self {
        ProgressPrinter {
            out,
            mode,
            vertices: BTreeMap::new(),
            order: Vec::new(),
            planned: Vec::new(),
            early_logs: BTreeMap::new(),
            started: Instant::now(),
            drawn_lines: 0,
        }
    }

    /// The build's vertices (digests, each after its inputs), for the tty view's order and count.
    pub fn plan(&mut self, digests: impl IntoIterator<Item = String>) {
        self.planned = digests.into_iter().collect();
    }

    /// Shows one event.
    pub fn event(&mut self, event: &Progress) {
        if let Progress::Export(data) = event {
            // The export stream is for the destination, not the display: show its size only.
            if self.mode == ProgressMode::RawJson {
                let _ = writeln!(self.out, "{}", json!({"export": {"bytes": data.len()}}));
            }
            return;
        }
        if self.mode == ProgressMode::RawJson {
            let _ = writeln!(self.out, "{}", raw_json(event));
            return;
        }
        let line = match event {
            Progress::Vertex {
                digest,
                name,
                state,
                error,
                ..
            } => {
                let line = self.vertex(digest, name, *state, error);
                match self.early_logs.remove(digest) {
                    Some(data) => Some(
                        line.unwrap_or_default() + &self.log(digest, &data).unwrap_or_default(),
                    ),
                    None => line,
                }
            }
            Progress::Log { digest, data, .. } if !self.vertices.contains_key(digest) => {
                self.early_logs
                    .entry(digest.clone())
                    .or_default()
                    .extend_from_slice(data);
                None
            }
            Progress::Log { digest, data, .. } => self.log(digest, data),
            Progress::Result(_) | Progress::Export(_) => None,
        };
        match self.mode {
            ProgressMode::Tty => self.redraw(),
            _ => {
                if let Some(line) = line {
                    let _ = write!(self.out, "{line}");
                }
            }
        }
    }

    /// Redraws the tty view (timers move); a no-op in other modes.
    pub fn tick(&mut self) {
        if self.mode == ProgressMode::Tty {
            self.redraw();
        }
    }

    fn vertex(
        &mut self,
        digest: &str,
        name: &str,
        state: VertexState,
        error: &str,
    ) -> Option<String> {
        let number = self.order.len() + 1;
        let v = self
            .vertices
            .entry(digest.to_string())
            .or_insert_with(|| Vertex {
                number,
                name: name.to_string(),
                state,
                started: None,
                took: None,
                error: String::new(),
                tail: VecDeque::new(),
                partial: String::new(),
            });
        if v.number == number {
            self.order.push(digest.to_string());
        }
        v.state = state;
        let n = v.number;
        match state {
            VertexState::Started => {
                v.started = Some(Instant::now());
                Some(format!("#{n} {}\n", v.name))
            }
            VertexState::Cached => Some(format!("#{n} {}\n#{n} CACHED\n", v.name)),
            VertexState::Completed => {
                v.took = v.started.map(|s| s.elapsed());
                Some(format!(
                    "#{n} DONE {:.1}s\n",
                    v.took.unwrap_or_default().as_secs_f64()
                ))
            }
            VertexState::Failed => {
                v.error = error.to_string();
                v.took = v.started.map(|s| s.elapsed());
                Some(format!("#{n} ERROR: {error}\n"))
            }
            VertexState::Canceled => Some(format!("#{n} CANCELED\n")),
        }
    }

    fn log(&mut self, digest: &str, data: &[u8]) -> Option<String> {
        let v = self.vertices.get_mut(digest)?;
        let since = v.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        v.partial.push_str(&String::from_utf8_lossy(data));
        let mut out = String::new();
        while let Some(nl) = v.partial.find('\n') {
            let line: String = v.partial.drain(..=nl).collect();
            let line = line.trim_end_matches('\n').to_string();
            out.push_str(&format!("#{} {since:.3} {line}\n", v.number));
            v.tail.push_back(line);
            if v.tail.len() > TTY_LOG_LINES {
                v.tail.pop_front();
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn redraw(&mut self) {
        let mut lines = Vec::new();
        let done = self
            .vertices
            .values()
            .filter(|v| v.state != VertexState::Started)
            .count();
        let unplanned = self
            .vertices
            .keys()
            .filter(|d| !self.planned.contains(d))
            .count();
        lines.push(format!(
            "[+] Building {:.1}s ({done}/{})",
            self.started.elapsed().as_secs_f64(),
            self.planned.len() + unplanned
        ));
        // Planned vertices in plan order, then the others (e.g. the export) as they came.
        let rank = |d: &String| {
            self.planned
                .iter()
                .position(|p| p == d)
                .unwrap_or(self.planned.len())
        };
        let mut order: Vec<&String> = self.order.iter().collect();
        order.sort_by_key(|d| rank(d));
        for digest in order {
            let v = &self.vertices[digest];
            let time = |d: Duration| format!("{:.1}s", d.as_secs_f64());
            lines.push(match v.state {
                VertexState::Started => {
                    format!(
                        " => {} {}",
                        v.name,
                        time(v.started.map(|s| s.elapsed()).unwrap_or_default())
                    )
                }
                VertexState::Cached => format!(" => CACHED {}", v.name),
                VertexState::Completed => {
                    format!(" => {} {}", v.name, time(v.took.unwrap_or_default()))
                }
                VertexState::Failed => format!(" => ERROR {}: {}", v.name, v.error),
                VertexState::Canceled => format!(" => CANCELED {}", v.name),
            });
            if v.state == VertexState::Started || v.state == VertexState::Failed {
                lines.extend(v.tail.iter().map(|l| format!(" => > {l}")));
            }
        }
        let mut buf = String::new();
        if self.drawn_lines > 0 {
            buf.push_str(&format!("\x1b[{}A\x1b[J", self.drawn_lines));
        }
        for l in &lines {
            buf.push_str(l);
            buf.push('\n');
        }
        self.drawn_lines = lines.len();
        let _ = self.out.write_all(buf.as_bytes());
        let _ = self.out.flush();
    }
}

fn raw_json(event: &Progress) -> serde_json::Value {
    match event {
        Progress::Vertex {
            digest,
            name,
            state,
            time,
            error,
        } => json!({"vertex": {
            "digest": digest, "name": name, "state": format!("{state:?}").to_lowercase(),
            "time": time.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            "error": error,
        }}),
        Progress::Log {
            digest,
            stream,
            data,
        } => {
            json!({"log": {"digest": digest, "stream": stream, "data": String::from_utf8_lossy(data)}})
        }
        Progress::Result(r) => json!({"result": r}),
        Progress::Export(data) => json!({"export": {"bytes": data.len()}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn v(digest: &str, state: VertexState) -> Progress {
        Progress::Vertex {
            digest: digest.into(),
            name: format!("step {digest}"),
            state,
            time: SystemTime::now(),
            error: "boom".into(),
        }
    }

    #[test]
    fn plain_numbers_vertices_and_prefixes_output_lines() {
        let mut out = Vec::new();
        let mut p = ProgressPrinter::new(&mut out, ProgressMode::Plain);
        p.event(&v("a", VertexState::Cached));
        p.event(&v("b", VertexState::Started));
        p.event(&Progress::Log {
            digest: "b".into(),
            stream: 1,
            data: b"hel".to_vec(),
        });
        p.event(&Progress::Log {
            digest: "b".into(),
            stream: 1,
            data: b"lo\nworld\n".to_vec(),
        });
        p.event(&v("b", VertexState::Failed));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(&lines[..3], ["#1 step a", "#1 CACHED", "#2 step b"]);
        assert!(
            lines[3].starts_with("#2 ") && lines[3].ends_with(" hello"),
            "{lines:?}"
        );
        assert!(lines[4].ends_with(" world"));
        assert_eq!(lines[5], "#2 ERROR: boom");
    }

    #[test]
    fn tty_redraws_in_place_with_the_output_tail() {
        let mut out = Vec::new();
        let mut p = ProgressPrinter::new(&mut out, ProgressMode::Tty);
        p.event(&v("a", VertexState::Started));
        p.event(&Progress::Log {
            digest: "a".into(),
            stream: 1,
            data: b"working\n".to_vec(),
        });
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\x1b[2A\x1b[J"),
            "the second draw moves up over the first: {text:?}"
        );
        assert!(text.contains(" => > working"));
    }

    #[test]
    fn tty_lists_steps_in_plan_order_and_counts_the_plan() {
        let mut out = Vec::new();
        let mut p = ProgressPrinter::new(&mut out, ProgressMode::Tty);
        p.plan(["a".to_string(), "b".to_string(), "c".to_string()]);
        // Cached steps come from the result backwards; the export is not in the plan.
        p.event(&v("c", VertexState::Cached));
        p.event(&v("b", VertexState::Cached));
        p.event(&v("export", VertexState::Started));
        let text = String::from_utf8(out).unwrap();
        let last = text.rsplit("\x1b[J").next().unwrap();
        let lines: Vec<&str> = last.lines().collect();
        assert!(lines[0].ends_with("(2/4)"), "{lines:?}");
        assert_eq!(lines[1], " => CACHED step b");
        assert_eq!(lines[2], " => CACHED step c");
        assert!(lines[3].starts_with(" => step export "), "{lines:?}");
    }

    #[test]
    fn rawjson_is_one_object_per_event() {
        let mut out = Vec::new();
        let mut p = ProgressPrinter::new(&mut out, ProgressMode::RawJson);
        p.event(&v("a", VertexState::Completed));
        p.event(&Progress::Result(
            [("k".to_string(), "v".to_string())].into(),
        ));
        let text = String::from_utf8(out).unwrap();
        let objs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(objs[0]["vertex"]["state"], "completed");
        assert_eq!(objs[1]["result"]["k"], "v");
    }
}
