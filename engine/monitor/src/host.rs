//! The built-in host source (`[sources.host]`, off by default): every
//! interval it samples this machine with `sysinfo` and writes the sample
//! to table `host_metrics` through the write path, like any client — so a
//! pipeline on `host_metrics` applies, and rules and SQL read it as data.
//!
//! One sample is several rows at one time, all tagged `host`:
//!
//! | row | tags | fields |
//! |---|---|---|
//! | the machine | `host` | `cpu_usage_pct` (all cores, over the last interval), `load1`, `load5`, `load15`, `memory_total_bytes`, `memory_used_bytes`, `memory_available_bytes`, `swap_total_bytes`, `swap_used_bytes` |
//! | each mounted disk | `host`, `mount_point` | `disk_total_bytes`, `disk_available_bytes` |
//! | each network interface | `host`, `interface` | `network_received_bytes_total`, `network_transmitted_bytes_total` (counters since boot) |

use std::time::Duration;

use sysinfo::{Disks, Networks, System};
use tokio::sync::watch;
use tracing::warn;
use weir_model::{ColumnType, TableBatch, Value, WriteBatchBuilder};
use weir_pipeline::WritePath;
use weir_protocols::Decoded;

/// The table samples go to.
pub const HOST_METRICS_TABLE: &str = "host_metrics";

/// `[sources.host]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSource {
    pub interval: Duration,
}

/// Samples this machine every `source.interval` until `stop` turns true.
pub async fn run(source: HostSource, path: WritePath, mut stop: watch::Receiver<bool>) {
    let mut sampler = match tokio::task::spawn_blocking(Sampler::new).await {
        Ok(Ok(sampler)) => sampler,
        Ok(Err(e)) => {
            warn!(error = %e, "host metrics: this platform cannot be sampled");
            return;
        }
        Err(e) => {
            warn!(error = %e, "host metrics: could not start the sampler");
            return;
        }
    };
    let mut ticks = tokio::time::interval(source.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is now: CPU usage needs an interval
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let sampled = tokio::task::spawn_blocking(move || {
            let sample = sampler.sample();
            (sampler, sample)
        })
        .await;
        let sample = match sampled {
            Ok((back, sample)) => {
                sampler = back;
                sample
            }
            Err(e) => {
                warn!(error = %e, "host metrics: the sampler failed; stopping");
                return;
            }
        };
        if let Err(e) = write(&path, sample).await {
            warn!(error = %e, "host metrics: the sample was not written");
        }
    }
}

async fn write(path: &WritePath, sample: Sample) -> Result<(), weir_pipeline::Error> {
    let admission = path.admit(sample.approximate_bytes()).await?;
    let rows = sample.rows() as u64;
    path.ingest(admission, rows, move |now_ns, tables| {
        let time_column = tables.time_column(HOST_METRICS_TABLE);
        Ok(Decoded {
            batches: sample.to_batches(now_ns, &time_column)?,
            rejected: Default::default(),
        })
    })
    .await?;
    Ok(())
}

struct Sampler {
    system: System,
    /// `None` where the platform cannot list them.
    disks: Option<Disks>,
    networks: Option<Networks>,
    host: String,
}

/// One reading of the machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub host: String,
    pub cpu_usage_pct: f64,
    /// `None` where the platform has no load average.
    pub load: Option<[f64; 3]>,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// Mount point, total and available bytes.
    pub disks: Vec<(String, u64, u64)>,
    /// Interface, bytes received and transmitted since boot.
    pub networks: Vec<(String, u64, u64)>,
}

impl Sampler {
    /// Fails where `sysinfo` cannot read this platform at all.
    fn new() -> Result<Self, sysinfo::Error> {
        let mut system = System::new()?;
        system.refresh_cpu_usage();
        Ok(Self {
            system,
            disks: Disks::new_with_refreshed_list().ok(),
            networks: Networks::new_with_refreshed_list().ok(),
            host: System::host_name().unwrap_or_else(|_| "unknown".into()),
        })
    }

    fn sample(&mut self) -> Sample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        // Mounts and interfaces come and go: relist them each time.
        if let Some(disks) = &mut self.disks {
            disks.refresh(true);
        }
        if let Some(networks) = &mut self.networks {
            networks.refresh(true);
        }
        let mut disks: Vec<_> = self
            .disks
            .iter()
            .flatten()
            .map(|d| {
                (
                    d.mount_point().display().to_string(),
                    d.total_space(),
                    d.available_space(),
                )
            })
            .collect();
        disks.sort();
        disks.dedup_by(|a, b| a.0 == b.0);
        let mut networks: Vec<_> = self
            .networks
            .iter()
            .flatten()
            .map(|(name, data)| {
                (
                    name.to_string_lossy().into_owned(),
                    data.total_received(),
                    data.total_transmitted(),
                )
            })
            .collect();
        networks.sort();
        Sample {
            host: self.host.clone(),
            cpu_usage_pct: f64::from(self.system.global_cpu_usage()),
            load: System::load_average()
                .ok()
                .map(|l| [l.one, l.five, l.fifteen])
                .filter(|l| l.iter().all(|v| v.is_finite() && *v >= 0.0)),
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
            memory_available_bytes: self.system.available_memory(),
            swap_total_bytes: self.system.total_swap(),
            swap_used_bytes: self.system.used_swap(),
            disks,
            networks,
        }
    }
}

impl Sample {
    fn rows(&self) -> usize {
        1 + self.disks.len() + self.networks.len()
    }

    fn approximate_bytes(&self) -> usize {
        256 * self.rows()
    }

    /// The sample as `host_metrics` rows at `now_ns`.
    pub fn to_batches(
        &self,
        now_ns: i64,
        time_column: &str,
    ) -> weir_model::Result<Vec<TableBatch>> {
        let mut b = WriteBatchBuilder::new(now_ns);
        let t = b.table(HOST_METRICS_TABLE, time_column)?;
        let host = b.column(t, "host", ColumnType::Tag, 0)?;
        let mut row = 0;

        b.begin_point(t, row, now_ns)?;
        b.set(t, host, row, Value::Tag(&self.host))?;
        let f64_field = |b: &mut WriteBatchBuilder, row: usize, name: &str, value: f64| {
            let column = b.column(t, name, ColumnType::F64, row)?;
            b.set(t, column, row, Value::F64(value))
        };
        if self.cpu_usage_pct.is_finite() {
            f64_field(&mut b, row, "cpu_usage_pct", self.cpu_usage_pct)?;
        }
        if let Some([one, five, fifteen]) = self.load {
            f64_field(&mut b, row, "load1", one)?;
            f64_field(&mut b, row, "load5", five)?;
            f64_field(&mut b, row, "load15", fifteen)?;
        }
        let u64_field = |b: &mut WriteBatchBuilder, row: usize, name: &str, value: u64| {
            let column = b.column(t, name, ColumnType::U64, row)?;
            b.set(t, column, row, Value::U64(value))
        };
        u64_field(&mut b, row, "memory_total_bytes", self.memory_total_bytes)?;
        u64_field(&mut b, row, "memory_used_bytes", self.memory_used_bytes)?;
        u64_field(
            &mut b,
            row,
            "memory_available_bytes",
            self.memory_available_bytes,
        )?;
        u64_field(&mut b, row, "swap_total_bytes", self.swap_total_bytes)?;
        u64_field(&mut b, row, "swap_used_bytes", self.swap_used_bytes)?;

        // One row per disk and per interface: the host, the device's own
        // tag, and its two counters.
        let devices = [
            (
                "mount_point",
                ["disk_total_bytes", "disk_available_bytes"],
                &self.disks,
            ),
            (
                "interface",
                [
                    "network_received_bytes_total",
                    "network_transmitted_bytes_total",
                ],
                &self.networks,
            ),
        ];
        for (tag, [first, second], rows) in devices {
            let tag = b.column(t, tag, ColumnType::Tag, row + 1)?;
            for (device, first_value, second_value) in rows {
                row += 1;
                b.begin_point(t, row, now_ns)?;
                b.set(t, host, row, Value::Tag(&self.host))?;
                b.set(t, tag, row, Value::Tag(device))?;
                u64_field(&mut b, row, first, *first_value)?;
                u64_field(&mut b, row, second, *second_value)?;
            }
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::UInt64Type;

    use super::*;

    #[test]
    fn a_sample_of_this_machine_makes_rows_for_it_its_disks_and_interfaces() {
        let mut sampler = Sampler::new().unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let sample = sampler.sample();
        assert!(sample.memory_total_bytes > 0, "{sample:?}");
        assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
        assert!(
            (0.0..=100.0 + 1e-6).contains(&sample.cpu_usage_pct),
            "{sample:?}"
        );

        let batches = sample
            .to_batches(1_700_000_000_000_000_000, "time")
            .unwrap();
        let batch = &batches[0].batch;
        assert_eq!(batch.num_rows(), sample.rows());
        let schema = batch.schema();
        let memory = schema.index_of("memory_total_bytes").unwrap();
        let memory = batch.column(memory).as_primitive::<UInt64Type>();
        assert_eq!(memory.value(0), sample.memory_total_bytes);
        assert_eq!(memory.null_count(), sample.rows() - 1, "one machine row");
    }
}
