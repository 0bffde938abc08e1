//! `weir suppress add|preview|list|show|update|expire`: suppressions of a
//! running server, through `/api/v1/suppressions`.
//!
//! Targets are matcher sets: each `--target` is one set, its matchers
//! separated by commas (`--target 'service="api",region=~"eu-.*"'`); an
//! alert is suppressed when some set matches it in full.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value, json};

use crate::monitor::{ServerArg, get_json, print_table, request_json, text};

#[derive(clap::Args)]
pub struct SuppressArgs {
    #[command(subcommand)]
    command: SuppressCommand,
}

#[derive(clap::Args, Clone)]
struct Definition {
    /// One matcher set: `name="value"` matchers (also `!=`, `=~`, `!~`)
    /// separated by commas. Repeat for more sets.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// How long from the start, e.g. `2h`; or give --end.
    #[arg(long, conflicts_with = "end")]
    duration: Option<String>,
    /// RFC 3339 start; default now.
    #[arg(long)]
    start: Option<String>,
    /// RFC 3339 end.
    #[arg(long)]
    end: Option<String>,
    /// Who makes it. Default: $USER.
    #[arg(long, env = "USER")]
    created_by: Option<String>,
    /// Why it exists.
    #[arg(long)]
    comment: String,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    engineer: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    #[arg(long)]
    ticket: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Make it even if it matches more than max_suppression_matches.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Subcommand)]
enum SuppressCommand {
    /// Create a suppression; prints its id and blast radius.
    Add {
        #[command(flatten)]
        definition: Definition,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Report what a suppression would hide, without creating it.
    Preview {
        #[command(flatten)]
        definition: Definition,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List suppressions.
    List {
        #[command(flatten)]
        server: ServerArg,
    },
    /// One suppression and the notifications it withheld.
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Replace a suppression's definition (its start and end may move).
    Update {
        id: String,
        #[command(flatten)]
        definition: Definition,
        #[command(flatten)]
        server: ServerArg,
    },
    /// End a suppression now.
    Expire {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// Splits one set's text at the commas between matchers (not those inside
/// quotes).
fn split_set(set: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in set.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

impl Definition {
    fn body(&self) -> anyhow::Result<Value> {
        let Some(created_by) = self.created_by.clone() else {
            bail!("say who makes it: --created-by NAME");
        };
        if self.duration.is_none() && self.end.is_none() {
            bail!("give --duration or --end");
        }
        Ok(json!({
            "targets": self.targets.iter().map(|s| split_set(s)).collect::<Vec<_>>(),
            "starts_at": self.start,
            "ends_at": self.end,
            "duration": self.duration,
            "created_by": created_by,
            "comment": self.comment,
            "team": self.team,
            "engineer": self.engineer,
            "channel": self.channel,
            "ticket": self.ticket,
            "description": self.description,
            "force": self.force,
        }))
    }
}

async fn send(
    method: reqwest::Method,
    server: &ServerArg,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    request_json(method, server.url(), path, body).await
}

fn print_radius(radius: &Value) {
    println!(
        "blast radius (now and the last 24 h): {} alert instances, {} firing now, {} services, {} rules",
        text(&radius["alert_instances"]),
        text(&radius["firing_now"]),
        text(&radius["services"]),
        text(&radius["rules"]),
    );
    for example in radius["examples"].as_array().into_iter().flatten() {
        println!("  {example}");
    }
}

pub async fn run(args: SuppressArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SuppressCommand::Add { definition, server } => {
            let answer = send(
                reqwest::Method::POST,
                &server,
                "/api/v1/suppressions",
                Some(definition.body()?),
            )
            .await?;
            println!("{}", text(&answer["suppression"]["id"]));
            print_radius(&answer["blast_radius"]);
        }
        SuppressCommand::Preview { definition, server } => {
            let answer = send(
                reqwest::Method::POST,
                &server,
                "/api/v1/suppressions/preview",
                Some(definition.body()?),
            )
            .await?;
            print_radius(&answer["blast_radius"]);
        }
        SuppressCommand::Update {
            id,
            definition,
            server,
        } => {
            let answer = send(
                reqwest::Method::PUT,
                &server,
                &format!("/api/v1/suppressions/{id}"),
                Some(definition.body()?),
            )
            .await?;
            println!("{}", text(&answer["suppression"]["id"]));
            print_radius(&answer["blast_radius"]);
        }
        SuppressCommand::Expire { id, server } => {
            send(
                reqwest::Method::DELETE,
                &server,
                &format!("/api/v1/suppressions/{id}"),
                None,
            )
            .await?;
            println!("expired {id}");
        }
        SuppressCommand::List { server } => {
            let answer = get_json(server.url(), "/api/v1/suppressions").await?;
            let rows = answer["suppressions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let targets = s["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|set| {
                            set.as_array()
                                .into_iter()
                                .flatten()
                                .map(text)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .collect::<Vec<_>>()
                        .join(" | ");
                    vec![
                        text(&s["id"]),
                        text(&s["state"]),
                        text(&s["starts_at"]),
                        text(&s["ends_at"]),
                        text(&s["created_by"]),
                        targets,
                    ]
                })
                .collect();
            print_table(&["ID", "STATE", "STARTS", "ENDS", "BY", "TARGETS"], rows);
        }
        SuppressCommand::Show { id, server } => {
            let answer = get_json(server.url(), &format!("/api/v1/suppressions/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split_set;

    #[test]
    fn sets_split_at_commas_outside_quotes() {
        assert_eq!(
            split_set(r#"service="a,b", region=~"eu-.*",x!="\"q,\"""#),
            vec![
                r#"service="a,b""#.to_string(),
                r#"region=~"eu-.*""#.to_string(),
                r#"x!="\"q,\"""#.to_string()
            ]
        );
    }
}
