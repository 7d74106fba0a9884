//! Logging for a Terraform plugin: hclog-compatible JSON lines on stderr (the format
//! go-plugin parses and re-logs under Terraform's `TF_LOG_PROVIDER`), and a panic hook
//! whose `panic: ` line Terraform's crash detector recognises. Nothing is ever written
//! to stdout, which carries the handshake line.
//!
//! A line looks like
//! `{"@level":"debug","@message":"...","@module":"provider","@timestamp":"2006-01-02T15:04:05.000000Z","rpc":"ReadResource"}`:
//! `@level` is one of trace/debug/info/warn/error, `@timestamp` has exactly six
//! fractional digits (go-plugin logs anything else verbatim at DEBUG), and span and
//! event fields become extra keys.

use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The tracing target prefixes logged at the level Terraform asked for: this crate's, and
/// the shared contract's (its API client logs each call to the edge). Everything else (h2,
/// tonic, ...) is capped at WARN.
const OWN_TARGETS: [&str; 2] = ["terraform_provider_postern", "postern_schema"];

/// Installs the JSON stderr logger (level from `TF_LOG_PROVIDER`, else `TF_LOG`, else
/// info) and the panic hook. Call once, first thing in `main`.
pub fn install() {
    let level = level_from_env(|key| std::env::var(key).ok());
    let filter = Targets::new()
        .with_targets(OWN_TARGETS.map(|target| (target, level)))
        .with_default(level.min(LevelFilter::WARN));
    // Another subscriber (a test harness) may already be installed; keep it.
    let _ = tracing_subscriber::registry()
        .with(HclogLayer::new(std::io::stderr).with_filter(filter))
        .try_init();
    install_panic_hook();
}

/// The level Terraform asked for: `TF_LOG_PROVIDER`, falling back to `TF_LOG`
/// (`JSON` means trace). Unset or unrecognised: info.
pub(crate) fn level_from_env(lookup: impl Fn(&str) -> Option<String>) -> LevelFilter {
    let value = lookup("TF_LOG_PROVIDER")
        .filter(|v| !v.trim().is_empty())
        .or_else(|| lookup("TF_LOG"))
        .unwrap_or_default();
    match value.trim().to_ascii_uppercase().as_str() {
        "TRACE" | "JSON" => LevelFilter::TRACE,
        "DEBUG" => LevelFilter::DEBUG,
        "WARN" => LevelFilter::WARN,
        "ERROR" => LevelFilter::ERROR,
        "OFF" => LevelFilter::OFF,
        _ => LevelFilter::INFO,
    }
}

/// Makes a panic print `panic: <message>`, where it happened, and a backtrace on
/// stderr, which Terraform shows as "The plugin crashed!".
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::force_capture();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "panic: {message}\n\nat {location}\n\n{backtrace}");
        let _ = stderr.flush();
    }));
}

/// A tracing layer writing one hclog JSON object per event.
pub(crate) struct HclogLayer<W> {
    make_writer: W,
}

impl<W> HclogLayer<W> {
    /// A layer writing to what `make_writer` makes (stderr in the plugin).
    pub(crate) fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// Fields recorded on a span, kept in its extensions.
#[derive(Default)]
struct SpanFields(Map<String, Json>);

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = FieldVisitor::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut fields = FieldVisitor::default();
            values.record(&mut fields);
            let mut extensions = span.extensions_mut();
            match extensions.get_mut::<SpanFields>() {
                Some(existing) => existing.0.extend(fields.fields),
                None => extensions.insert(SpanFields(fields.fields)),
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.clone());
                }
            }
        }
        let mut fields = FieldVisitor::default();
        event.record(&mut fields);
        line.extend(fields.fields);
        let message = fields.message.unwrap_or_default();
        line.insert(
            "@level".into(),
            Json::from(level_name(*event.metadata().level())),
        );
        line.insert("@message".into(), Json::from(message));
        line.insert("@module".into(), Json::from("provider"));
        line.insert("@timestamp".into(), Json::from(timestamp_now()));
        let mut text = Json::Object(line).to_string();
        text.push('\n');
        // One write per line, so lines from different threads do not interleave.
        let _ = self.make_writer.make_writer().write_all(text.as_bytes());
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// Now, as `2006-01-02T15:04:05.000000Z` (UTC, exactly six fractional digits).
pub(crate) fn timestamp_now() -> String {
    format_timestamp(time::OffsetDateTime::now_utc())
}

fn format_timestamp(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

/// Collects a span's or event's fields as JSON; `message` is kept apart.
#[derive(Default)]
struct FieldVisitor {
    message: Option<String>,
    fields: Map<String, Json>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Json) {
        if field.name() == "message" {
            self.message = Some(match value {
                Json::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Json::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Json::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Json::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Json::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Json::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Json::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Json::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut inner) = self.0.lock() {
                inner.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn events_become_hclog_json_lines() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(HclogLayer::new(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("rpc", rpc = "ReadResource");
            let _enter = span.enter();
            tracing::warn!(
                tf_resource_type = "postern_tunnel",
                attempt = 2,
                "slow edge"
            );
        });
        let text = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        let text = String::from_utf8(text).unwrap_or_default();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Json = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(line["@level"], "warn");
        assert_eq!(line["@message"], "slow edge");
        assert_eq!(line["@module"], "provider");
        assert_eq!(line["rpc"], "ReadResource");
        assert_eq!(line["tf_resource_type"], "postern_tunnel");
        assert_eq!(line["attempt"], 2);
        let ts = line["@timestamp"].as_str().unwrap_or_default();
        assert_eq!(ts.len(), "2006-01-02T15:04:05.000000Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    }

    #[test]
    fn timestamps_have_six_fractional_digits() {
        let at = time::macros::datetime!(2006-01-02 15:04:05.123456789 UTC);
        assert_eq!(format_timestamp(at), "2006-01-02T15:04:05.123456Z");
        let at = time::macros::datetime!(2006-01-02 15:04:05 UTC);
        assert_eq!(format_timestamp(at), "2006-01-02T15:04:05.000000Z");
    }

    #[test]
    fn level_follows_terraform_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(level_from_env(env(&[])), LevelFilter::INFO);
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "debug")])),
            LevelFilter::DEBUG
        );
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "JSON")])),
            LevelFilter::TRACE
        );
        assert_eq!(
            level_from_env(env(&[("TF_LOG", "debug"), ("TF_LOG_PROVIDER", "ERROR")])),
            LevelFilter::ERROR
        );
        assert_eq!(
            level_from_env(env(&[("TF_LOG_PROVIDER", "bogus")])),
            LevelFilter::INFO
        );
    }
}
