//! The three kinds of plugin, and the glue between them and the generated
//! bindings that the `export_*!` macros expand to.

use std::any::Any;
use std::cell::RefCell;

use crate::build::ColumnsBuilder;
use crate::types::{Batch, Column};
use crate::view::{Event, Events, Value, check_column};
use crate::{Config, EventsBuilder};

/// Decides, event by event, what to keep. Exported with [`export_filter!`](crate::export_filter).
///
/// The instance lives as long as the plugin is loaded, so a filter may
/// remember what it saw in earlier batches.
///
/// ```
/// use weir_sdk::{Config, Event, Filter};
///
/// /// Keeps unhealthy checks and slow responses.
/// struct Interesting { slow_ms: f64 }
///
/// impl Filter for Interesting {
///     fn init(config: &Config) -> Result<Self, String> {
///         Ok(Self { slow_ms: config.parse("slow-ms")?.unwrap_or(500.0) })
///     }
///     fn keep(&mut self, event: &Event<'_>) -> bool {
///         event.tag("status") == Some("unhealthy")
///             || event.field_f64("response_ms").is_some_and(|ms| ms > self.slow_ms)
///     }
/// }
/// // In the plugin crate: weir_sdk::export_filter!(Interesting);
///
/// let mut input = weir_sdk::EventsBuilder::new();
/// input.event("checks", 1).tag("status", "healthy").field_f64("response_ms", 20.0);
/// input.event("checks", 2).tag("status", "healthy").field_f64("response_ms", 900.0);
/// input.event("checks", 3).tag("status", "unhealthy");
/// let batch = &input.finish().unwrap()[0];
///
/// let mut filter = Interesting::init(&Config::default()).unwrap();
/// assert_eq!(weir_sdk::testing::filter(&mut filter, batch).unwrap(), [1, 2]);
/// ```
pub trait Filter: Sized + 'static {
    /// Called once with the stage's configuration; an error refuses the plugin.
    fn init(config: &Config) -> Result<Self, String>;

    /// Whether to keep one event.
    fn keep(&mut self, event: &Event<'_>) -> bool;

    /// The rows of a batch to keep, ascending. Override to work on the whole
    /// batch at once, or to fail it with a message.
    fn filter(&mut self, events: &Events<'_>) -> Result<Vec<u32>, String> {
        let mut kept = Vec::with_capacity(events.len());
        for event in events.iter() {
            if self.keep(&event) {
                kept.push(event.row() as u32);
            }
        }
        Ok(kept)
    }
}

/// Adds or changes tags and fields of each event. Exported with
/// [`export_enricher!`](crate::export_enricher).
///
/// ```
/// use weir_sdk::{Changes, Config, Event, Enricher};
///
/// struct Region(String);
///
/// impl Enricher for Region {
///     fn init(config: &Config) -> Result<Self, String> {
///         Ok(Self(config.require("region")?.to_string()))
///     }
///     fn enrich(&mut self, _event: &Event<'_>, changes: &mut Changes<'_>) -> Result<(), String> {
///         changes.set_tag("region", &self.0);
///         Ok(())
///     }
/// }
///
/// let mut input = weir_sdk::EventsBuilder::new();
/// input.event("checks", 1).tag("service", "api");
/// let batch = &input.finish().unwrap()[0];
/// let mut region = Region::init(&Config::from_pairs([("region", "eu-1")])).unwrap();
/// let out = weir_sdk::testing::enrich(&mut region, batch).unwrap();
/// let events = weir_sdk::Events::new(&out).unwrap();
/// assert_eq!(events.event(0).tag("region"), Some("eu-1"));
/// assert_eq!(events.event(0).tag("service"), Some("api"));
/// ```
pub trait Enricher: Sized + 'static {
    fn init(config: &Config) -> Result<Self, String>;

    /// Records the changes for one event in `changes`. An error fails the
    /// whole batch.
    fn enrich(&mut self, event: &Event<'_>, changes: &mut Changes<'_>) -> Result<(), String>;
}

/// Turns raw input into events. Exported with [`export_adapter!`](crate::export_adapter).
///
/// ```
/// use weir_sdk::{Adapter, Config, EventsBuilder, Input};
///
/// /// One `service status` pair per line.
/// struct Lines { table: String }
///
/// impl Adapter for Lines {
///     fn init(config: &Config) -> Result<Self, String> {
///         Ok(Self { table: config.get_or("table", "checks").to_string() })
///     }
///     fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
///         for (n, line) in input.text()?.lines().enumerate() {
///             let (service, status) = line
///                 .split_once(' ')
///                 .ok_or_else(|| format!("line {}: expected `service status`", n + 1))?;
///             out.event(&self.table, 0).tag("service", service).tag("status", status);
///         }
///         Ok(())
///     }
/// }
///
/// let mut lines = Lines::init(&Config::default()).unwrap();
/// let batches = weir_sdk::testing::adapt(&mut lines, "text/plain", b"api healthy\ndb unhealthy").unwrap();
/// assert_eq!(weir_sdk::Events::new(&batches[0]).unwrap().len(), 2);
/// assert!(weir_sdk::testing::adapt(&mut lines, "text/plain", b"nonsense").is_err());
/// ```
pub trait Adapter: Sized + 'static {
    fn init(config: &Config) -> Result<Self, String>;

    /// Parses one request body into `out`. An error rejects the whole body,
    /// and should say what is wrong with it.
    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String>;
}

/// One raw request body given to an [`Adapter`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub content_type: &'a str,
    pub body: &'a [u8],
}

impl<'a> Input<'a> {
    /// The body as UTF-8 text, or an error saying where it is not.
    pub fn text(&self) -> Result<&'a str, String> {
        std::str::from_utf8(self.body).map_err(|e| format!("body is not UTF-8: {e}"))
    }
}

/// The changes an [`Enricher`] makes to one event.
pub struct Changes<'a> {
    columns: &'a mut ColumnsBuilder,
    row: usize,
    error: &'a mut Option<String>,
}

impl Changes<'_> {
    fn set(&mut self, name: &str, value: Value<'_>) -> &mut Self {
        if let Err(e) = self.columns.set(self.row, name, value)
            && self.error.is_none()
        {
            *self.error = Some(format!("event {}: {e}", self.row));
        }
        self
    }

    pub fn set_tag(&mut self, name: &str, value: &str) -> &mut Self {
        self.set(name, Value::Tag(value))
    }

    pub fn set_f64(&mut self, name: &str, value: f64) -> &mut Self {
        self.set(name, Value::F64(value))
    }

    pub fn set_i64(&mut self, name: &str, value: i64) -> &mut Self {
        self.set(name, Value::I64(value))
    }

    pub fn set_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.set(name, Value::U64(value))
    }

    pub fn set_bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.set(name, Value::Bool(value))
    }

    pub fn set_str(&mut self, name: &str, value: &str) -> &mut Self {
        self.set(name, Value::String(value))
    }
}

/// Runs a filter over one batch, as the host calls it.
pub(crate) fn run_filter<F: Filter>(plugin: &mut F, batch: &Batch) -> Result<Vec<u32>, String> {
    plugin.filter(&Events::new(batch)?)
}

/// Runs an enricher over one batch; returns the columns to set.
pub(crate) fn run_enricher<E: Enricher>(
    plugin: &mut E,
    batch: &Batch,
) -> Result<Vec<Column>, String> {
    let events = Events::new(batch)?;
    let mut columns = ColumnsBuilder::default();
    let mut error = None;
    for event in events.iter() {
        let mut changes = Changes {
            columns: &mut columns,
            row: event.row(),
            error: &mut error,
        };
        plugin.enrich(&event, &mut changes)?;
    }
    if let Some(error) = error {
        return Err(error);
    }
    Ok(columns.finish(events.len()))
}

/// Runs an adapter over one body.
pub(crate) fn run_adapter<A: Adapter>(
    plugin: &mut A,
    content_type: &str,
    body: &[u8],
) -> Result<Vec<Batch>, String> {
    let mut out = EventsBuilder::new();
    plugin.adapt(&Input { content_type, body }, &mut out)?;
    let batches = out.finish()?;
    for batch in &batches {
        for column in &batch.columns {
            check_column(column, batch.time.len())?;
        }
    }
    Ok(batches)
}

thread_local! {
    /// The plugin instance, created by `init`. A component instance runs one
    /// call at a time, so a thread-local is the whole story.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

pub(crate) fn init_instance<P: 'static>(
    make: impl FnOnce() -> Result<P, String>,
) -> Result<(), String> {
    let plugin = make()?;
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
    Ok(())
}

pub(crate) fn with_instance<P: 'static, R>(
    f: impl FnOnce(&mut P) -> Result<R, String>,
) -> Result<R, String> {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let plugin = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .ok_or_else(|| "plugin called before init".to_string())?;
        f(plugin)
    })
}
