//! `weir token create|list|revoke`: the access tokens of a data directory.
//! Edits `<data_dir>/tokens.json` directly (a running server picks changes
//! up within a second), so it works with the server up or down and needs
//! no token itself: whoever can write the data directory owns the server
//! anyway.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use weir_server::auth::{self, tokens};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Args)]
struct DataDirArg {
    /// The server's data directory. Default: the one `weir serve` would
    /// use with the same `--config`/`WEIR_DATA_DIR`, else `./weir-data`.
    #[arg(long, env = "WEIR_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The server's config file, to find its data directory.
    #[arg(long, env = "WEIR_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and stored only hashed.
    Create {
        /// What the token may do: write, query, admin (admin includes the
        /// other two); repeat or separate with commas.
        #[arg(long = "scope", required = true, value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Who or what uses it, for `list` and the logs.
        #[arg(long)]
        name: String,
        /// Print an `[[auth.tokens]]` entry for the config file instead of
        /// storing the token in the data directory.
        #[arg(long)]
        print_config: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List the data directory's tokens (never their secrets).
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Revoke a token by id or name; the server refuses it within a second.
    Revoke {
        /// The token's id (as `list` shows it) or its name.
        token: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

impl DataDirArg {
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        if let Some(config) = &self.config {
            let file = weir_server::ServeArgs::from_toml_file(config)?;
            if let Some(dir) = file.data_dir {
                return Ok(dir);
            }
        }
        Ok(PathBuf::from("weir-data"))
    }
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TokenCommand::Create {
            scopes,
            name,
            print_config,
            dir,
        } => {
            let scopes = auth::parse_scopes(&scopes)?;
            let (token, entry) = tokens::generate(&name, scopes)?;
            if print_config {
                println!("# The token (shown once; give it to the client):\n# {token}");
                println!("[[auth.tokens]]");
                println!("id = {:?}", entry.id);
                println!("name = {:?}", entry.name);
                let scopes: Vec<String> = entry
                    .scopes
                    .iter()
                    .map(|s| format!("{:?}", s.as_str()))
                    .collect();
                println!("scopes = [{}]", scopes.join(", "));
                println!("hash = {:?}", entry.hash);
                return Ok(ExitCode::SUCCESS);
            }
            let data_dir = dir.resolve()?;
            let id = entry.id.clone();
            tokens::edit(&data_dir, |stored| {
                if stored.iter().any(|t| t.name == entry.name) {
                    return Err(weir_server::Error::Config(format!(
                        "a token named {:?} exists already; revoke it or pick another name",
                        entry.name
                    )));
                }
                stored.push(entry);
                Ok(())
            })
            .with_context(|| format!("storing the token in {}", data_dir.display()))?;
            eprintln!("created token {id} ({name}); it is shown once, here:");
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { dir } => {
            let data_dir = dir.resolve()?;
            let stored = tokens::load(&tokens::tokens_path(&data_dir))?;
            println!("{:<14} {:<24} {:<20} CREATED", "ID", "NAME", "SCOPES");
            for entry in stored {
                let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:<14} {:<24} {:<20} {}",
                    entry.id,
                    entry.name,
                    scopes.join(","),
                    entry.created
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { token, dir } => {
            let data_dir = dir.resolve()?;
            let removed = tokens::edit(&data_dir, |stored| {
                let before = stored.len();
                stored.retain(|e| e.id != token && e.name != token);
                Ok(before - stored.len())
            })?;
            if removed == 0 {
                bail!(
                    "no token with id or name {token:?} in {}",
                    data_dir.display()
                );
            }
            eprintln!("revoked {token:?}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
