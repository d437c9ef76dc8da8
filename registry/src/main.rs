//! `tagguard-registry`: an OCI Distribution registry in which every tag write
//! goes through tagguard, and every immutability change leaves its record.

mod accounts;
mod app;
mod blobs;
mod console;
mod digest;
mod errors;
mod inspect;
mod metrics;
mod oci;
mod plugins;
mod policies;
mod rest;
mod serve;
mod store;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The reference registry for tagguard.
#[derive(Parser)]
#[command(name = "tagguard-registry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OCI Distribution API, Quay's REST API and tagguard's own.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
        /// Data directory: the SQLite database, blobs, keys and swapped-in plugins.
        #[arg(long, default_value = "./tagguard-data")]
        data: PathBuf,
        /// Accounts file (TOML, [[account]] name/secret/kind/admin). Without one, an
        /// `admin` account is made on first start and its token printed once.
        #[arg(long)]
        tokens: Option<PathBuf>,
        /// Database: `postgres://USER@HOST:PORT/DB` for PostgreSQL, which several
        /// registry processes may share (give them one shared data directory too).
        /// Without it, SQLite in the data directory.
        #[arg(long)]
        database: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve {
            listen,
            data,
            tokens,
            database,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::serve(serve::ServeOptions {
                listen,
                data,
                tokens,
                database,
            }))
        }
    }
}
