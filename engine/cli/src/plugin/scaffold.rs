//! `weir plugin new`: a plugin crate that builds, tests and loads as is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use weir_plugins::PluginKind;

#[derive(clap::Args)]
pub struct NewArgs {
    /// Crate name (also the directory), e.g. `my-filter`.
    name: String,
    /// The kind of plugin.
    #[arg(long)]
    kind: PluginKind,
    /// Parent directory of the new crate.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where `weir-sdk` is. Default: the SDK of the source tree this
    /// binary was built from, if it is still there, else crates.io.
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,
}

/// The SDK next to the sources this binary was built from.
fn built_in_sdk() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../sdk")
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").exists())
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!("{name:?} is not a crate name: use letters, digits, - and _");
    }
    let root = args.dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk = match args.sdk_path.or_else(built_in_sdk) {
        Some(path) => format!("path = {:?}, ", path.display().to_string()),
        None => "version = \"0.1\", ".to_string(),
    };
    let kind = args.kind.as_str();
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = {{ {sdk}features = ["{kind}"] }}

# A crate of its own, not a member of any workspace around it.
[workspace]
"#
    );
    let source = match args.kind {
        PluginKind::Filter => FILTER,
        PluginKind::Enricher => ENRICHER,
        PluginKind::Adapter => ADAPTER,
    };
    let wasm = name.replace('-', "_");
    let readme = format!(
        "# {name}\n\nA Weir {kind} plugin.\n\n```sh\ncargo test                                        # the logic, natively\nrustup target add wasm32-wasip2                   # once\ncargo build --release --target wasm32-wasip2\nweir plugin check target/wasm32-wasip2/release/{wasm}.wasm\n```\n"
    );
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(root.join("Cargo.toml"), manifest)?;
    std::fs::write(root.join("src/lib.rs"), source)?;
    std::fs::write(root.join("README.md"), readme)?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    println!("created {kind} plugin {}", root.display());
    println!(
        "  cd {} && cargo test && cargo build --release --target wasm32-wasip2",
        root.display()
    );
    println!("  component: target/wasm32-wasip2/release/{wasm}.wasm");
    Ok(ExitCode::SUCCESS)
}

const FILTER: &str = r#"//! A Weir filter: keeps the events worth storing.

use weir_sdk::{Config, Event, Filter};

pub struct Plugin {
    slow_ms: f64,
}

impl Filter for Plugin {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            slow_ms: config.parse("slow-ms")?.unwrap_or(500.0),
        })
    }

    /// Keeps unhealthy checks and slow responses.
    fn keep(&mut self, event: &Event<'_>) -> bool {
        event.tag("status") == Some("unhealthy")
            || event.field_f64("response_ms").is_some_and(|ms| ms > self.slow_ms)
    }
}

weir_sdk::export_filter!(Plugin);

#[cfg(test)]
mod tests {
    use weir_sdk::{Config, EventsBuilder, testing};

    use super::*;

    #[test]
    fn keeps_slow_and_unhealthy() {
        let mut input = EventsBuilder::new();
        input.event("checks", 1).tag("status", "healthy").field_f64("response_ms", 20.0);
        input.event("checks", 2).tag("status", "healthy").field_f64("response_ms", 900.0);
        input.event("checks", 3).tag("status", "unhealthy");
        let batch = &input.finish().unwrap()[0];
        let mut plugin = Plugin::init(&Config::default()).unwrap();
        assert_eq!(testing::filter(&mut plugin, batch).unwrap(), [1, 2]);
    }
}
"#;

const ENRICHER: &str = r#"//! A Weir enricher: adds tags and fields to events.

use weir_sdk::{Changes, Config, Enricher, Event};

pub struct Plugin {
    region: String,
}

impl Enricher for Plugin {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            region: config.get_or("region", "unknown").to_string(),
        })
    }

    fn enrich(&mut self, event: &Event<'_>, changes: &mut Changes<'_>) -> Result<(), String> {
        changes.set_tag("region", &self.region);
        if let Some(ms) = event.field_f64("response_ms") {
            changes.set_bool("slow", ms > 500.0);
        }
        Ok(())
    }
}

weir_sdk::export_enricher!(Plugin);

#[cfg(test)]
mod tests {
    use weir_sdk::{Config, Events, EventsBuilder, testing};

    use super::*;

    #[test]
    fn tags_the_region() {
        let mut input = EventsBuilder::new();
        input.event("checks", 1).field_f64("response_ms", 900.0);
        let batch = &input.finish().unwrap()[0];
        let mut plugin = Plugin::init(&Config::from_pairs([("region", "eu-1")])).unwrap();
        let out = testing::enrich(&mut plugin, batch).unwrap();
        let event = Events::new(&out).unwrap().event(0);
        assert_eq!(event.tag("region"), Some("eu-1"));
        assert_eq!(event.field_bool("slow"), Some(true));
    }
}
"#;

const ADAPTER: &str = r#"//! A Weir adapter: turns raw input into events.
//!
//! Input: lines of `service status response_ms`.

use weir_sdk::{Adapter, Config, EventsBuilder, Input};

pub struct Plugin {
    table: String,
}

impl Adapter for Plugin {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            table: config.get_or("table", "checks").to_string(),
        })
    }

    fn adapt(&mut self, input: &Input<'_>, out: &mut EventsBuilder) -> Result<(), String> {
        for (n, line) in input.text()?.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [service, status, ms] = fields[..] else {
                return Err(format!("line {}: expected `service status response_ms`", n + 1));
            };
            let ms: f64 = ms
                .parse()
                .map_err(|_| format!("line {}: {ms:?} is not a number", n + 1))?;
            out.event(&self.table, 0)
                .tag("service_name", service)
                .tag("status", status)
                .field_f64("response_ms", ms);
        }
        Ok(())
    }
}

weir_sdk::export_adapter!(Plugin);

#[cfg(test)]
mod tests {
    use weir_sdk::{Config, testing};

    use super::*;

    #[test]
    fn parses_lines() {
        let mut plugin = Plugin::init(&Config::default()).unwrap();
        let out = testing::adapt(&mut plugin, "text/plain", b"api healthy 12.5\ndb unhealthy 900").unwrap();
        let events = testing::events(&out).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].tag("status"), Some("unhealthy"));
        assert!(testing::adapt(&mut plugin, "text/plain", b"nonsense").is_err());
    }
}
"#;
