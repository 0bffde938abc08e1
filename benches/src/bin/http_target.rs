//! A local HTTP service for the monitoring benches: any number of health
//! endpoints to probe (`GET /svc/{anything}` → 200, or 503 for services
//! listed with `--down`), and a receiver that notes when each notification
//! arrived (`POST /receive/{name}`; `GET /received` lists them as JSON).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Services answering 503, comma-separated.
    #[arg(long, value_delimiter = ',')]
    down: Vec<String>,
}

#[derive(Clone)]
struct Target {
    down: Arc<HashSet<String>>,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn health(
    State(t): State<Target>,
    Path(service): Path<String>,
) -> (StatusCode, &'static str) {
    if t.down.contains(&service) {
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn receive(State(t): State<Target>, Path(name): Path<String>, body: Bytes) -> StatusCode {
    let arrived_ns = now_ns();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Ok(mut received) = t.received.lock() {
        received
            .push(serde_json::json!({"receiver": name, "arrived_ns": arrived_ns, "body": body}));
    }
    StatusCode::OK
}

async fn received(State(t): State<Target>) -> axum::Json<serde_json::Value> {
    let list = t.received.lock().map(|r| r.clone()).unwrap_or_default();
    axum::Json(serde_json::Value::Array(list))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = Target {
        down: Arc::new(args.down.into_iter().collect()),
        received: Arc::default(),
    };
    let app = Router::new()
        .route("/svc/{service}", get(health))
        .route("/receive/{name}", post(receive))
        .route("/received", get(received))
        .with_state(target);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
