//! `flotilla-storage backup|restore|verify`: the database's backup tool (see `flotilla_storage::backup`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use flotilla_storage::backup;
use flotilla_storage::mongo::{Mongo, MongoOptions};

#[derive(Parser)]
#[command(
    name = "flotilla-storage",
    version,
    about = "Back up and restore a Flotilla database"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export every collection to a compressed archive with a manifest.
    Backup {
        #[command(flatten)]
        database: Database,
        /// The archive to write (`.tar.gz`); written beside and renamed into place when complete.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore an archive into a database whose collections are empty.
    Restore {
        #[command(flatten)]
        database: Database,
        #[arg(long)]
        from: PathBuf,
    },
    /// Check an archive against its manifest without touching any database.
    Verify {
        #[arg(long)]
        archive: PathBuf,
    },
}

#[derive(clap::Args)]
struct Database {
    #[arg(long, env = "FLOTILLA_MONGO_URL")]
    mongo_url: String,
    #[arg(long, env = "FLOTILLA_MONGO_DATABASE", default_value = "flotilla")]
    database: String,
}

impl Database {
    async fn connect(&self) -> flotilla_storage::Result<Mongo> {
        Mongo::connect_unmonitored(&MongoOptions::new(&self.mongo_url, &self.database)).await
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let outcome: flotilla_storage::Result<()> = async {
        let manifest = match Args::parse().command {
            Command::Backup { database, out } => backup::export(&database.connect().await?, &out).await?,
            Command::Restore { database, from } => backup::restore(&database.connect().await?, &from).await?,
            Command::Verify { archive } => backup::verify(&archive)?,
        };
        for collection in &manifest.collections {
            println!("{}\t{} documents", collection.name, collection.documents);
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("flotilla-storage: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
