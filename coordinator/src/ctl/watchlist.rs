//! `mcdnnctl watchlist add NAME IMAGE... | list | remove NAME`: the operator's side of the
//! watchlist. Photos are read here, sent once to the leader's operator API (which keeps only
//! the descriptors it computes from them) and never stored by the coordinator.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use clap::Subcommand;

use super::cluster::{Target, post_write};
use super::output::emit;
use crate::admin::watchlist::{
    MAX_PHOTOS, MAX_UPLOAD_BYTES, WatchlistAddRequest, WatchlistRemoveRequest, WatchlistView,
};

#[derive(Debug, Subcommand)]
pub enum WatchlistCommand {
    /// Put NAME on the watchlist (or replace its photos): one face per photo, PNG or JPEG;
    /// needs an admin operator certificate.
    Add {
        /// The name a match answers (1-64 printable characters).
        name: String,
        /// Photos of that person (at most 8, one face each).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// The names on the watchlist and the list's version (never descriptors).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Take NAME off the watchlist (admin operator certificate).
    Remove {
        /// The name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(command: &WatchlistCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        WatchlistCommand::Add {
            name,
            images,
            target,
        } => {
            wire::msg::check_watchlist_name(name).map_err(anyhow::Error::msg)?;
            let body = add_body(name, images)?;
            let ack = post_write(target, "/v1/watchlist/add", &body)?;
            writeln!(
                out,
                "{name} added to the watchlist from {} photo(s), committed at index {}",
                images.len(),
                ack.index
            )?;
        }
        WatchlistCommand::Remove { name, target } => {
            let body = serde_json::to_string(&WatchlistRemoveRequest { name: name.clone() })?;
            let ack = post_write(target, "/v1/watchlist/remove", &body)?;
            writeln!(
                out,
                "{name} removed from the watchlist, committed at index {}",
                ack.index
            )?;
        }
        WatchlistCommand::List { target } => {
            let view = get_view(target)?;
            emit(target.output, &view, out, |v, o| {
                writeln!(o, "version {:016x}, {} name(s)", v.version, v.names.len())?;
                writeln!(
                    o,
                    "{:<32} {:>11} {:<20} INDEX",
                    "NAME", "DESCRIPTORS", "ADDED BY"
                )?;
                for n in &v.names {
                    writeln!(
                        o,
                        "{:<32} {:>11} {:<20} {}",
                        n.name, n.descriptors, n.added_by, n.index
                    )?;
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// The JSON body of an add: the photos base64-encoded, checked against the API's limits
/// before anything is sent.
fn add_body(name: &str, images: &[PathBuf]) -> anyhow::Result<String> {
    anyhow::ensure!(
        images.len() <= MAX_PHOTOS,
        "at most {MAX_PHOTOS} photos per name, not {}",
        images.len()
    );
    let mut photos = Vec::with_capacity(images.len());
    for path in images {
        photos.push(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    add_body_of(name, &photos)
}

/// [`add_body`] for photos already in memory (PNG or JPEG bytes).
pub fn add_body_of(name: &str, photos: &[Vec<u8>]) -> anyhow::Result<String> {
    anyhow::ensure!(
        photos.len() <= MAX_PHOTOS,
        "at most {MAX_PHOTOS} photos per name, not {}",
        photos.len()
    );
    let encoded: Vec<String> = photos
        .iter()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p))
        .collect();
    let body = serde_json::to_string(&WatchlistAddRequest {
        name: name.to_string(),
        images: encoded,
    })?;
    anyhow::ensure!(
        body.len() <= MAX_UPLOAD_BYTES,
        "the photos make a {} byte upload, over the {MAX_UPLOAD_BYTES}-byte limit; send smaller photos",
        body.len()
    );
    Ok(body)
}

fn get_view(target: &Target) -> anyhow::Result<WatchlistView> {
    let client = target.identity.client()?;
    let mut errors = Vec::new();
    for admin in &target.admins {
        match client.get(admin, "/v1/watchlist", std::time::Duration::from_secs(10)) {
            Ok(body) => return serde_json::from_str(&body).context("parsing /v1/watchlist"),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    anyhow::bail!("{}", errors.join("; "))
}
