//! The built-in `[sources.host]`: this machine's metrics, sampled into
//! `host_metrics` through the write path.

use std::time::Duration;

use anyhow::Result;
use weir_e2e::{WeirServer, eventually};

use super::rows;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_source_samples_this_machine_into_sql() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, "[sources.host]\ninterval = \"200ms\"\n")?;
    let server = WeirServer::start_unconfigured(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    )?;
    // Two samples: CPU usage is measured over an interval.
    eventually(Duration::from_secs(30), "two host samples", async || {
        let n = server
            .count("SELECT COUNT(DISTINCT time) FROM host_metrics")
            .await
            .unwrap_or(0);
        Ok((n >= 2).then_some(()))
    })
    .await?;
    let machine = rows(
        &server,
        "SELECT CAST(host AS VARCHAR) AS host, cpu_usage_pct, memory_total_bytes,
                memory_used_bytes, load1
         FROM host_metrics WHERE memory_total_bytes IS NOT NULL ORDER BY time DESC LIMIT 1",
    )
    .await?;
    let m = &machine[0];
    assert!(!m["host"].as_str().unwrap_or("").is_empty(), "{m:?}");
    let total = m["memory_total_bytes"].as_u64().unwrap_or(0);
    assert!(total > 0 && m["memory_used_bytes"].as_u64().unwrap_or(u64::MAX) <= total);
    let cpu = m["cpu_usage_pct"].as_f64().unwrap_or(-1.0);
    assert!((0.0..=100.0001).contains(&cpu), "{m:?}");
    assert!(
        m["load1"].as_f64().is_some(),
        "Linux has a load average: {m:?}"
    );

    // The loopback interface counts bytes: the test's own HTTP requests.
    let lo = server
        .count(
            "SELECT COUNT(*) FROM host_metrics
             WHERE interface = 'lo' AND network_received_bytes_total > 0",
        )
        .await?;
    assert!(lo > 0);
    let root = server
        .count(
            "SELECT COUNT(*) FROM host_metrics
             WHERE mount_point = '/' AND disk_total_bytes > 0",
        )
        .await?;
    assert!(root > 0);
    Ok(())
}
